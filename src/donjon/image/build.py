"""The two images, layer by layer: what scripts/build-image runs.

  layer 1  Debian's packages (rootfs.py), the user, the writable directories   both
  layer 2  /opt/donjon: Donjon and its dependencies (pyenv.py)                  both
  layer 3  what the Steward's extras add (psycopg, python-pkcs11)               Steward

The Keep image is layers 1-2 with ``donjon`` as its entrypoint; the Steward image
is the Keep image plus layer 3, with ``donjon steward`` as its entrypoint and port
8443. They share layers 1 and 2 byte for byte (same digests), so a node that pulls
both stores those once.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from donjon.image import CACHE_DIR, GID, STATE_DIR, UID, VENV, Progress, ociarchive, pyenv, rootfs
from donjon.image.buildah import Buildah, BuildahError, ImageConfig

IMAGES = ("keep", "steward")
#: files that would mean a compiler or linker is in an image
COMPILERS = frozenset({"gcc", "cc", "c++", "g++", "clang", "clang++", "ld", "ld.bfd", "ld.gold",
                       "ld.lld", "lld", "as", "tcc", "rustc", "cargo", "zig", "go"})  # fmt: skip


@dataclass(frozen=True)
class Built:
    name: str  # keep | steward
    ref: str  # the image name inside the archive
    archive: Path
    image: ociarchive.Image


@dataclass(frozen=True)
class BuildResult:
    images: tuple[Built, ...]
    donjon_version: str
    debian_packages: tuple[str, ...]  # name=version
    bytecode: bool
    storage_driver: str
    seconds: float


def _env() -> tuple[tuple[str, str], ...]:
    return (
        ("PATH", f"{VENV}/bin:/usr/bin:/bin"),
        ("HOME", STATE_DIR),  # a volume: nothing writes under a read-only root
        ("DONJON_STATE_DIR", STATE_DIR),
        ("DONJON_CACHE_DIR", CACHE_DIR),
        ("XDG_CACHE_HOME", CACHE_DIR),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONUNBUFFERED", "1"),
        ("LANG", "C.UTF-8"),
    )


def image_config(name: str, version: str, revision: str, created: str) -> ImageConfig:
    title, description = {
        "keep": ("donjon-keep", "Donjon Keep runtime: WebAssembly in a TEE, attested, TLS"),
        "steward": ("donjon-steward", "Donjon Steward: attestation-gated certificate authority"),
    }[name]
    labels = (
        ("org.opencontainers.image.title", title),
        ("org.opencontainers.image.description", description),
        ("org.opencontainers.image.version", version),
        ("org.opencontainers.image.revision", revision),
        ("org.opencontainers.image.created", created),
        ("org.opencontainers.image.licenses", "Apache-2.0"),
        ("org.opencontainers.image.base.name", "scratch (Debian 12 packages, scripts/build-image)"),
    )
    steward = name == "steward"
    return ImageConfig(
        user=f"{UID}:{GID}",
        entrypoint=("donjon", "steward") if steward else ("donjon",),
        cmd=("serve", "--help") if steward else ("platform", "info"),
        env=_env(),
        labels=labels,
        workingdir=STATE_DIR,
        ports=("8443/tcp",) if steward else (),
    )


def _git(repo: Path, *args: str) -> str:
    """Git's answer, or "" outside a checkout or without git (a source tarball)."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    except FileNotFoundError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def source_date(repo: Path) -> int:
    """$SOURCE_DATE_EPOCH, else the last commit's time: the same sources give the same dates."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    if env.isdigit():
        return int(env)
    committed = _git(repo, "log", "-1", "--format=%ct")
    return int(committed) if committed.isdigit() else int(time.time())


def find_compilers(root: Path) -> list[str]:
    """Paths in an unpacked image whose name is a compiler's or linker's."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.name in COMPILERS and (path.is_symlink() or path.is_file())
    )


def build(repo: Path, out: Path, cache: Path, progress: Progress,
          names: tuple[str, ...] = IMAGES, driver: str = "auto") -> BuildResult:  # fmt: skip
    """Build ``names`` into ``out/donjon-<name>.oci.tar``; ``cache`` keeps the .debs."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    epoch = source_date(repo)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    revision = _git(repo, "rev-parse", "HEAD") or "unknown"
    with tempfile.TemporaryDirectory(prefix="donjon-image-") as tmp:
        work = Path(tmp)
        buildah = Buildah(work / "storage", driver)  # fails first when buildah is missing
        progress(f"buildah storage driver: {buildah.driver}")
        root = work / "rootfs"
        root.mkdir()
        debs = rootfs.build(root, cache / "debs", progress)
        venvs = pyenv.build(repo, work, rootfs.dpkg_architecture(), progress)
        bytecode = pyenv.compile_bytecode(
            [(root / "usr/lib/python3.11", "/usr/lib/python3.11"),
             (venvs.common / pyenv.SITE, f"{VENV}/{pyenv.SITE}"),
             (venvs.steward_extra / pyenv.SITE, f"{VENV}/{pyenv.SITE}")],
            progress,
        )  # fmt: skip
        for tree in (root, venvs.common, venvs.steward_extra):
            found = find_compilers(tree)
            if found:
                raise rootfs.RootfsError(f"a compiler or linker would be in the image: {found[0]}")
        empty = work / "empty"
        empty.mkdir()
        try:
            progress("buildah: layer 1 (Debian packages, user, writable directories)")
            base = buildah.from_image("scratch")
            buildah.copy(base, root, "/")
            for path in rootfs.writable_dirs():
                buildah.copy(base, empty, path, chown=f"{UID}:{GID}")
            buildah.commit(base, "localhost/donjon-base", epoch)
            progress("buildah: layer 2 (/opt/donjon), the Keep image")
            keep = buildah.from_image("localhost/donjon-base")
            buildah.copy(keep, venvs.common, VENV)
            buildah.config(keep, image_config("keep", venvs.donjon_version, revision, created))
            buildah.commit(keep, "localhost/donjon-keep", epoch)
            built = []
            if "keep" in names:
                built.append(_export(buildah, "keep", venvs.donjon_version, out, progress))
            if "steward" in names:
                progress("buildah: layer 3 (the Steward's extras), the Steward image")
                steward = buildah.from_image("localhost/donjon-keep")
                buildah.copy(steward, venvs.steward_extra, VENV)
                config = image_config("steward", venvs.donjon_version, revision, created)
                buildah.config(steward, config)
                buildah.commit(steward, "localhost/donjon-steward", epoch)
                built.append(_export(buildah, "steward", venvs.donjon_version, out, progress))
        finally:
            try:
                buildah.remove_all()
            except BuildahError as exc:  # the temporary directory goes anyway
                progress(f"warning: {exc}")
    return BuildResult(
        tuple(built),
        venvs.donjon_version,
        tuple(f"{d.name}={d.version}" for d in debs),
        bytecode,
        buildah.driver,
        time.monotonic() - started,
    )


def _export(buildah: Buildah, name: str, version: str, out: Path, progress: Progress) -> Built:
    archive = out / f"donjon-{name}.oci.tar"
    ref = f"localhost/donjon-{name}:{version}"
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    buildah.push_archive(f"localhost/donjon-{name}", partial, ref)
    image = ociarchive.open_image(partial)  # checked before it takes the final name
    os.replace(partial, archive)
    image = dataclasses.replace(image, path=archive)
    progress(f"wrote {archive} ({image.compressed_size / 1e6:.1f} MB compressed, "
             f"{image.uncompressed_size / 1e6:.1f} MB unpacked)")  # fmt: skip
    return Built(name, ref, archive, image)
