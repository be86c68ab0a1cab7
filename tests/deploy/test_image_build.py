"""scripts/build-image: both images built, read back blob by blob, and run without a runtime.

No container runtime works on these machines, so the Steward image is run the way a
runtime would run it, by hand: its OCI archive's layers (each checked against the
manifest's digest) are unpacked into a directory, that directory is bind-mounted
read-only (``readOnlyRootFilesystem``), writable directories are mounted where the
Helm chart mounts its volumes, and ``chroot --userspec=10001:10001`` runs the image's
entrypoint with the image config's own environment: ``donjon steward init``, then
``donjon steward serve`` over HTTPS on 127.0.0.1, answering /healthz and /readyz.
The Keep image runs a WASI module (wasmtime's native library, in the image).

Needs root (chroot, mount), Debian's apt and buildah (scripts/install-system-deps
installs it); skips with the reason otherwise. CI has all three, so it runs there.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from donjon import toolchain
from donjon.image import CACHE_DIR, GID, STATE_DIR, UID, VENV, buildah, ociarchive, pyenv, rootfs
from donjon.image.build import find_compilers, image_config
from support.net import free_port, stop
from support.pki import client_context, write_self_signed

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = REPO / "tests" / "wasi" / "programs"
#: the sizes docs/kubernetes.md states (measured: keep 55/163 MB, steward 62/185 MB)
LIMITS_MB = {"keep": (65, 200), "steward": (75, 225)}  # compressed, unpacked

pytestmark = pytest.mark.slow


def _why_not() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (buildah's storage, chroot and bind mounts)"
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return "needs Debian's apt-get and dpkg-deb (the image is made from Debian packages)"
    if not buildah.available():
        return "buildah is not installed; scripts/install-system-deps installs it"
    return None


@dataclass(frozen=True)
class Built:
    summary: dict[str, object]
    images: dict[str, ociarchive.Image]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    why = _why_not()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("image")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build-image"), "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    images = {name: ociarchive.open_image(out / f"donjon-{name}.oci.tar")
              for name in ("keep", "steward")}  # fmt: skip
    return Built(summary, images)


@pytest.fixture(scope="module")
def steward_root(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("steward-rootfs")
    ociarchive.unpack(built.images["steward"], root)
    return root


def test_summary_names_each_archive_digest_and_size(built: Built) -> None:
    images = {i["name"]: i for i in built.summary["images"]}  # type: ignore[attr-defined]
    assert set(images) == {"keep", "steward"}
    for name, image in built.images.items():
        said = images[name]
        assert said["digest"] == image.manifest_digest  # read back independently
        assert said["compressed_bytes"] == image.compressed_size
        assert said["uncompressed_bytes"] == image.uncompressed_size
        assert said["user"] == f"{UID}:{GID}"


def test_the_images_are_small(built: Built) -> None:
    for name, (compressed_mb, unpacked_mb) in LIMITS_MB.items():
        image = built.images[name]
        assert image.compressed_size < compressed_mb * 1_000_000, (name, image.compressed_size)
        assert image.uncompressed_size < unpacked_mb * 1_000_000, (name, image.uncompressed_size)


def test_the_steward_shares_the_keep_layers(built: Built) -> None:
    keep, steward = built.images["keep"], built.images["steward"]
    assert len(keep.layers) == 2 and len(steward.layers) == 3
    assert steward.layers[:2] == keep.layers


def test_config_non_root_entrypoint_labels_and_writable_paths(built: Built) -> None:
    for name, image in built.images.items():
        config = image.runtime
        user = config["User"].split(":")
        assert [int(x) for x in user] == [UID, GID] and UID != 0
        env = dict(e.split("=", 1) for e in config["Env"])
        assert env["HOME"] == env["DONJON_STATE_DIR"] == STATE_DIR
        assert env["PATH"].startswith(f"{VENV}/bin:")
        labels = config["Labels"]
        assert labels["org.opencontainers.image.title"] == f"donjon-{name}"
        assert labels["org.opencontainers.image.version"] == built.summary["donjon_version"]
        assert image.config["architecture"] in ("amd64", "arm64")
    assert built.images["steward"].runtime["Entrypoint"] == ["donjon", "steward"]
    assert built.images["keep"].runtime["Entrypoint"] == ["donjon"]
    assert "8443/tcp" in built.images["steward"].runtime["ExposedPorts"]


def test_no_compiler_no_pip_no_shell_and_only_the_state_dirs_are_the_users(
    steward_root: Path,
) -> None:
    assert find_compilers(steward_root) == []
    site = steward_root / VENV.lstrip("/") / "lib/python3.11/site-packages"
    assert (site / "donjon").is_dir() and (site / "psycopg").is_dir()
    assert not list(site.glob("pip*")) and not list(site.glob("setuptools*"))
    assert not list(site.glob("*.dist-info/direct_url.json"))  # the build's temporary paths
    assert not (steward_root / "bin/sh").exists() and not (steward_root / "usr/bin/apt").exists()
    scripts = sorted((steward_root / VENV.lstrip("/") / "bin").iterdir())
    assert "donjon" in [s.name for s in scripts]
    for script in scripts:
        if not script.is_symlink():  # python, python3, python3.11 -> /usr/bin/python3.11
            first = script.read_bytes().split(b"\n", 1)[0]
            assert first == f"#!{VENV}/bin/python3".encode(), script.name
    theirs = sorted(
        str(p.relative_to(steward_root))
        for p in steward_root.rglob("*")
        if not p.is_symlink() and p.stat().st_uid == UID
    )
    assert theirs == ["var/cache/donjon", "var/lib/donjon"]
    passwd = (steward_root / "etc/passwd").read_text()
    assert f"donjon:x:{UID}:{GID}:Donjon:{STATE_DIR}:/usr/sbin/nologin" in passwd.splitlines()


def test_a_flipped_byte_in_a_blob_is_refused(built: Built, tmp_path: Path) -> None:
    image = built.images["keep"]
    victim = "blobs/sha256/" + image.config_digest.removeprefix("sha256:")
    bad = tmp_path / "bad.oci.tar"
    with tarfile.open(image.path) as src, tarfile.open(bad, "w") as dst:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name == victim and data is not None:
                content = bytearray(data.read())
                content[len(content) // 2] ^= 0x01
                dst.addfile(member, io.BytesIO(bytes(content)))
            else:
                dst.addfile(member, data)
    with pytest.raises(ociarchive.ArchiveError, match="does not match its digest"):
        ociarchive.open_image(bad)


@contextmanager
def mounted(root: Path, work: Path, more: tuple[str, ...] = ()) -> Iterator[dict[str, Path]]:
    """``root`` read-only, with writable state, cache and /tmp (and ``more``), as the chart
    mounts its volumes; each a new directory of ``work``, owned by the image's user."""
    writable = {STATE_DIR: work / "state", CACHE_DIR: work / "cache", "/tmp": work / "tmp"}
    for i, inside in enumerate(more):
        writable[inside] = work / f"more{i}"
        (root / inside.lstrip("/")).mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    try:
        subprocess.run(["mount", "--bind", str(root), str(root)], check=True, capture_output=True)
        done.append(root)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(root)], check=True,
                       capture_output=True)  # fmt: skip
        for inside, outside in writable.items():
            outside.mkdir()
            os.chown(outside, UID, GID)
            target = root / inside.lstrip("/")
            subprocess.run(["mount", "--bind", str(outside), str(target)], check=True,
                           capture_output=True)  # fmt: skip
            done.append(target)
        yield writable
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"bind mounts failed ({exc.stderr.strip()}): cannot run the image read-only")
    finally:
        for target in reversed(done):
            subprocess.run(["umount", str(target)], check=False, capture_output=True)


def _image_env(image: ociarchive.Image) -> dict[str, str]:
    return dict(e.split("=", 1) for e in image.runtime["Env"])


def _in_image(root: Path, image: ociarchive.Image, *args: str) -> list[str]:
    """The command a runtime runs: chroot into ``root`` as the image's user, its entrypoint."""
    return ["/usr/sbin/chroot", f"--userspec={image.runtime['User']}", str(root),
            *image.runtime["Entrypoint"], *args]  # fmt: skip


def test_the_steward_image_serves_https_on_a_read_only_root(
    built: Built, steward_root: Path, tmp_path: Path
) -> None:
    image = built.images["steward"]
    env = _image_env(image)
    with mounted(steward_root, tmp_path) as dirs:
        version = subprocess.run(
            ["/usr/sbin/chroot", f"--userspec={image.runtime['User']}", str(steward_root),
             "donjon", "--version"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip() == f"donjon, version {built.summary['donjon_version']}"
        probe = subprocess.run(
            ["/usr/sbin/chroot", str(steward_root), "/opt/donjon/bin/python3", "-c",
             "open('/opt/donjon/pyvenv.cfg', 'a')"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr
        state = dirs[STATE_DIR]
        cert, key = write_self_signed(state, cert_name="https.pem", key_name="https.key")
        (state / "policy.toml").write_text(f'[snp]\nmeasurement = ["{"ab" * 48}"]\n')
        for path in (cert, key, state / "policy.toml"):
            os.chown(path, UID, GID)
        key.chmod(0o600)
        init = subprocess.run(_in_image(steward_root, image, "init", "--dir", STATE_DIR),
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert init.returncode == 0, init.stderr
        assert (state / "ca.pem").is_file() and (state / "ca.key").stat().st_uid == UID
        port = free_port()
        log = (tmp_path / "serve.log").open("wb")
        serve = subprocess.Popen(
            _in_image(steward_root, image, "serve", "--dir", STATE_DIR, "--addr", "127.0.0.1",
                      "--port", str(port), "--policy", f"{STATE_DIR}/policy.toml",
                      "--tls-cert", f"{STATE_DIR}/https.pem", "--tls-key", f"{STATE_DIR}/https.key",
                      "--drain-seconds", "0"),
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            health = _get_when_up(f"https://127.0.0.1:{port}/healthz", cert, serve)
            assert health.status_code == 200, health.text
            ready = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=client_context(cert))
            assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        finally:
            stop(serve)
            log.close()
        assert (state / "audit.db").is_file()  # the audit store went to the volume


def _get_when_up(url: str, cert: Path, proc: subprocess.Popen[bytes]) -> httpx.Response:
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the Steward in the image exited with {proc.returncode}")
        try:
            return httpx.get(url, verify=client_context(cert), timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_keep_image_runs_a_wasi_module(built: Built, tmp_path: Path) -> None:
    image = built.images["keep"]
    root = tmp_path / "rootfs"
    root.mkdir()
    ociarchive.unpack(image, root)
    assert not (root / VENV.lstrip("/") / "lib/python3.11/site-packages/psycopg").exists()
    wasm = toolchain.build_wat(PROGRAMS / "exit_status.wat")
    env = _image_env(image)
    with mounted(root, _fresh(tmp_path / "mounts")) as dirs:
        shutil.copy(wasm, dirs[STATE_DIR] / "exit.wasm")
        run = subprocess.run(
            _in_image(root, image, "run-wasm", f"{STATE_DIR}/exit.wasm", "42"),
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 42, run.stderr
        assert any((dirs[CACHE_DIR]).rglob("*")), "no compiled module was cached"


def _fresh(path: Path) -> Path:
    path.mkdir()
    return path


def test_the_charts_init_container_makes_private_copies_in_the_image(
    built: Built, steward_root: Path, tmp_path: Path
) -> None:
    """The chart's private-copies step, as rendered, run in the image (which has no shell)."""
    chart = pytest.importorskip("test_helm_chart", reason="the Helm chart's renderer")
    steward = next(o for o in chart.render({}) if o["kind"] == "Deployment"
                   and o["metadata"]["name"] == "demo-steward")  # fmt: skip
    init = steward["spec"]["template"]["spec"]["initContainers"][0]
    assert init["name"] == "private-copies"
    image = built.images["steward"]
    secrets = {"/secrets/ca": {"ca.key": b"KEY"}, "/secrets/tokens": {"admin": b"A", "audit": b"B"}}
    with mounted(steward_root, tmp_path, ("/run/donjon", *secrets)) as dirs:
        for inside, files in secrets.items():
            for name, data in files.items():  # as Kubernetes mounts them: root, group-readable
                (dirs[inside] / name).write_bytes(data)
                os.chown(dirs[inside] / name, 0, GID)
                (dirs[inside] / name).chmod(0o440)
        done = subprocess.run(
            ["/usr/sbin/chroot", f"--userspec={image.runtime['User']}", str(steward_root),
             *init["command"], *init["args"]],
            env=_image_env(image), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        copies = {p.name: p for p in dirs["/run/donjon"].iterdir()}
        assert sorted(copies) == ["admin.token", "audit.token", "ca.key"]
        assert copies["ca.key"].read_bytes() == b"KEY"
        assert copies["audit.token"].read_bytes() == b"B"
        for path in copies.values():
            assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_uid == UID


def test_the_containerfile_agrees_with_the_script() -> None:
    """Same user, entrypoints, environment and working directory, whichever builds it."""
    containerfile = pytest.importorskip("test_containerfile")
    stages = containerfile.stages()
    for name in ("keep", "steward"):
        wanted = image_config(name, "0", "0", "0")
        found: dict[str, str] = {}
        for keyword, rest in containerfile._inherited(stages, name):
            if keyword == "ENV":
                found.update(pair.split("=", 1) for pair in rest.split())
            elif keyword in ("USER", "WORKDIR"):
                found[keyword] = rest
            elif keyword == "ENTRYPOINT":
                found[keyword] = json.dumps(json.loads(rest))
            elif keyword == "RUN" and "useradd" in rest:
                found["RUN"] = " ".join(rest.split())
        assert found["USER"] == wanted.user
        assert found["WORKDIR"] == wanted.workingdir
        assert found["ENTRYPOINT"] == json.dumps(list(wanted.entrypoint))
        for key, value in wanted.env:
            if key == "PATH":  # the base image's own PATH follows the venv's
                assert found[key] == f"{VENV}/bin:$PATH"
            else:
                assert found[key] == value, key
        assert f"--uid {UID} --gid {GID}" in found["RUN"]
        assert f"--home-dir {STATE_DIR} --shell /usr/sbin/nologin" in found["RUN"]
        assert f"install -d -o {UID} -g {GID} {STATE_DIR} {CACHE_DIR}" in found["RUN"]


@pytest.mark.parametrize(
    "head",
    [
        b"#!/build/machine/venv/bin/python3.11\n",
        b"#!/bin/sh\n'''exec' \"/a/very/long/build/path/bin/python\" \"$0\" \"$@\"\n' '''\n",
    ],
)
def test_scripts_run_the_images_python_without_a_shell(head: bytes, tmp_path: Path) -> None:
    body = b"# -*- coding: utf-8 -*-\nimport sys\nsys.exit(0)\n"
    (tmp_path / "src").write_bytes(head + body)
    pyenv._retarget(tmp_path / "src", tmp_path / "dest")
    assert (tmp_path / "dest").read_bytes() == f"#!{VENV}/bin/python3\n".encode() + body


def test_without_buildah_the_script_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build-image"), "--out", str(tmp_path)],
        env={**os.environ, "PATH": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "build-image: error: buildah is not installed (Debian: apt-get install buildah"
    )
    assert "Traceback" not in done.stderr and not list(tmp_path.glob("*.tar"))


def test_help_explains_with_examples() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "build-image"), "--help"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0
    assert "scripts/build-image --out /tmp/img --json" in done.stdout
    assert "--storage-driver" in done.stdout and "podman load" in done.stdout


def test_a_debian_dependency_nobody_chose_stops_the_build() -> None:
    libc = rootfs.Deb("libc6", "2.36", "amd64", "0" * 64, (("libgcc-s1",),))
    gcc = rootfs.Deb("libgcc-s1", "12", "amd64", "1" * 64, (("gcc-12-base",), ("libc6",)))
    rootfs.check_closure([libc, gcc])  # gcc-12-base is left out on purpose
    new = rootfs.Deb("libssl3", "3", "amd64", "2" * 64, (("libc6",), ("libzstd1",)))
    with pytest.raises(rootfs.RootfsError, match="neither in the image nor left out on purpose: "
                       "libssl3 needs libzstd1"):  # fmt: skip
        rootfs.check_closure([libc, gcc, new])
    either = rootfs.Deb("ca-certificates", "1", "all", "3" * 64, (("debconf", "cdebconf"),))
    rootfs.check_closure([libc, gcc, either])  # one alternative left out is enough
