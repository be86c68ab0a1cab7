"""The images' root filesystem, made from Debian's own packages without a base image.

A base image lives on a container registry; this machine (and CI) reaches only
Debian's mirror and PyPI. So the few packages Donjon needs at run time are
downloaded with ``apt-get download`` (apt checks them against the signed index),
checked again here against the index's SHA-256 (a cached ``.deb`` is untrusted
until it matches), and unpacked with ``dpkg-deb``. No maintainer script runs:
what those would do (the CA bundle, users) is done by :func:`configure`.

Every dependency of a listed package is either listed too or in :data:`LEFT_OUT`
with the reason it is not needed at run time: when Debian adds a dependency the
build stops and says so, rather than shipping an image that fails at run time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from donjon.errors import DonjonError
from donjon.image import CACHE_DIR, GID, STATE_DIR, UID, USER, Progress

#: what Donjon needs at run time: Debian's Python 3.11 and the libraries its modules load
RUNTIME_PACKAGES: dict[str, str] = {
    "base-files": "/etc/os-release and the directory layout (scanners read it)",
    "libc6": "the C library and the dynamic loader",
    "libgcc-s1": "unwinding for wasmtime's and pydantic-core's Rust code",
    "python3.11-minimal": "the interpreter",
    "libpython3.11-minimal": "the core standard library",
    "libpython3.11-stdlib": "the rest of the standard library (asyncio, sqlite3, ctypes...)",
    "libssl3": "the ssl module: every TLS connection of the Steward and the Keep",
    "zlib1g": "zlib (gzip, OCI layers)",
    "libexpat1": "pyexpat (xml), which plistlib and others load",
    "libffi8": "ctypes: wasmtime's bindings",
    "libsqlite3-0": "the Steward's default audit store (SQLite)",
    "libbz2-1.0": "bz2",
    "liblzma5": "lzma",
    "libuuid1": "uuid's fast path",
    "libcrypt1": "libpython3.11-stdlib links _crypt against it",
    "ca-certificates": "the system trust store (Keeps reaching https endpoints)",
}

#: dependencies of the packages above that the images do not need, and why
LEFT_OUT: dict[str, str] = {
    "gcc-12-base": "documentation only (libgcc-s1's dependency)",
    "awk": "base-files' maintainer scripts, which do not run",
    "debconf": "ca-certificates' maintainer scripts; the bundle is built here",
    "debconf-2.0": "ca-certificates' maintainer scripts",
    "openssl": "the openssl command, for update-ca-certificates; the bundle is built here",
    "media-types": "/etc/mime.types; Python's mimetypes has its own table",
    "mime-support": "/etc/mime.types; Python's mimetypes has its own table",
    "libdb5.3": "the dbm modules (unused; their extension modules are removed)",
    "libncursesw6": "curses (unused; removed)",
    "libtinfo6": "curses and readline (unused; removed)",
    "libreadline8": "the interactive interpreter's line editing (removed)",
    "libnsl2": "the nis module (unused; removed)",
    "libtirpc3": "the nis module (unused; removed)",
}

#: files of the packages above that nothing in the images reads
PRUNED = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
    "usr/share/binfmts",
    "usr/lib/binfmt.d",
    "usr/sbin/update-ca-certificates",  # a shell script; there is no shell
    "usr/lib/python3.11/test",
    "usr/lib/python3.11/idlelib",
    "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/pydoc_data",
)
#: extension modules whose libraries are left out, and the standard library's test modules
PRUNED_EXTENSIONS = re.compile(
    r"^(_curses|_curses_panel|_dbm|nis|readline|_test\w*|_ctypes_test|_xxtestfuzz|xxlimited\w*"
    r"|ossaudiodev|audioop)\.cpython-"
)


class RootfsError(DonjonError):
    """The Debian packages could not be found, fetched, checked or unpacked."""


@dataclass(frozen=True)
class Deb:
    """One package as the signed apt index describes it."""

    name: str
    version: str
    architecture: str
    sha256: str
    depends: tuple[tuple[str, ...], ...]  # each a list of alternatives

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def dpkg_architecture() -> str:
    return _run(["dpkg", "--print-architecture"], "dpkg --print-architecture").strip()


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise RootfsError(f"{what}: {cmd[0]} is not installed (Debian: apt-get install {cmd[0]})")\
            from exc
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        errors = [line for line in lines if line.startswith("E:")]  # apt's, not its warnings
        raise RootfsError(f"{what} failed: {(errors or lines)[-1]}")
    return done.stdout


def _stanzas(text: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            found.append(fields)
    return found


def _depends(fields: dict[str, str]) -> tuple[tuple[str, ...], ...]:
    text = ", ".join(v for k in ("Pre-Depends", "Depends") if (v := fields.get(k)))
    groups = []
    for group in filter(None, (g.strip() for g in text.split(","))):
        names = tuple(re.split(r"[\s(:]", alt.strip(), maxsplit=1)[0] for alt in group.split("|"))
        groups.append(names)
    return tuple(groups)


def resolve(arch: str, packages: tuple[str, ...] = tuple(RUNTIME_PACKAGES)) -> list[Deb]:
    """The candidate version of each package, from apt's (signed) index."""
    out = _run(
        ["apt-cache", "show", "--no-all-versions", *(f"{p}:{arch}" for p in packages)],
        "apt-cache show (run apt-get update if a package is unknown)",
    )
    debs = {}
    for fields in _stanzas(out):
        name = fields.get("Package", "")
        sha = fields.get("SHA256", "")
        if name in packages and re.fullmatch(r"[0-9a-f]{64}", sha) and name not in debs:
            debs[name] = Deb(name, fields["Version"], fields["Architecture"], sha, _depends(fields))
    missing = [p for p in packages if p not in debs]
    if missing:
        raise RootfsError(f"apt knows no candidate for {', '.join(missing)} (run apt-get update)")
    return [debs[p] for p in packages]


def check_closure(debs: list[Deb]) -> None:
    """Every dependency is in the image or left out on purpose (:data:`LEFT_OUT`)."""
    names = {d.name for d in debs}
    unknown = sorted(
        f"{deb.name} needs {' | '.join(group)}"
        for deb in debs
        for group in deb.depends
        if not any(alt in names or alt in LEFT_OUT for alt in group)
    )
    if unknown:
        raise RootfsError(
            f"a Debian dependency is neither in the image nor left out on purpose: {unknown[0]}",
            hint="add it to RUNTIME_PACKAGES or LEFT_OUT in src/donjon/image/rootfs.py",
            more=tuple(unknown[1:]),
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(debs: list[Deb], cache: Path, progress: Progress) -> dict[str, Path]:
    """Each package's ``.deb`` in ``cache``, downloaded unless a copy with its digest is there."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {d.name: cache / d.filename for d in debs}
    wanted = [d for d in debs if not paths[d.name].is_file() or _sha256(paths[d.name]) != d.sha256]
    if wanted:
        progress(f"downloading {len(wanted)} Debian packages ({len(debs) - len(wanted)} cached)")
        # apt downloads as root here (its _apt user cannot write a private directory);
        # each file is checked against the index's digest below either way
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            _run(["apt-get", "download", "-q", *(f"{d.name}:{d.architecture}={d.version}"
                                                  for d in wanted)],
                 "apt-get download (if the mirror no longer has a version: apt-get update)",
                 cwd=Path(tmp))  # fmt: skip
            for deb in wanted:
                got = Path(tmp) / deb.filename
                if not got.is_file():
                    raise RootfsError(f"apt-get download did not write {deb.filename}")
                if _sha256(got) != deb.sha256:
                    raise RootfsError(f"{deb.filename}: SHA-256 differs from apt's index")
                os.replace(got, paths[deb.name])
    else:
        progress(f"{len(debs)} Debian packages already downloaded (SHA-256 checked)")
    return paths


def extract(debs: list[Deb], paths: dict[str, Path], rootfs: Path) -> None:
    """Unpack the packages into ``rootfs`` with Debian 12's merged /usr layout."""
    for top in ("bin", "sbin", "lib", "lib64"):
        (rootfs / "usr" / top).mkdir(parents=True, exist_ok=True)
        (rootfs / top).symlink_to(f"usr/{top}")
    for deb in debs:
        with subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(paths[deb.name])], stdout=subprocess.PIPE
        ) as fsys:
            untar = subprocess.run(
                ["tar", "-x", "-C", str(rootfs), "--keep-directory-symlink", "--no-same-owner"],
                stdin=fsys.stdout, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        if fsys.returncode != 0 or untar.returncode != 0:
            raise RootfsError(f"unpacking {deb.filename} failed: {untar.stderr.strip()[-300:]}")
    _write_dpkg_status(debs, paths, rootfs)


def _write_dpkg_status(debs: list[Deb], paths: dict[str, Path], rootfs: Path) -> None:
    """/var/lib/dpkg/status, so that image scanners see which packages (and versions) are in."""
    stanzas = []
    for deb in debs:
        control = _run(["dpkg-deb", "-f", str(paths[deb.name])], f"dpkg-deb -f {deb.filename}")
        lines = control.rstrip("\n").splitlines()
        stanzas.append("\n".join([lines[0], "Status: install ok installed", *lines[1:]]))
    status = rootfs / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text("\n\n".join(stanzas) + "\n")


def prune(rootfs: Path) -> None:
    for rel in PRUNED:
        path = rootfs / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    dynload = rootfs / "usr" / "lib" / "python3.11" / "lib-dynload"
    for ext in dynload.iterdir():
        if PRUNED_EXTENSIONS.match(ext.name):
            ext.unlink()


def configure(rootfs: Path) -> None:
    """What the maintainer scripts and ``useradd`` would have done, and nothing more."""
    etc = rootfs / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{USER}:x:{UID}:{GID}:Donjon:{STATE_DIR}:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text(f"root:x:0:\n{USER}:x:{GID}:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
    # update-ca-certificates: the bundle OpenSSL's default paths point at
    mozilla = sorted((rootfs / "usr" / "share" / "ca-certificates").rglob("*.crt"))
    if not mozilla:
        raise RootfsError("ca-certificates holds no certificate")
    certs = etc / "ssl" / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "ca-certificates.crt").write_text(
        "".join(p.read_text().rstrip("\n") + "\n" for p in mozilla)
    )
    ssl_dir = rootfs / "usr" / "lib" / "ssl"
    ssl_dir.mkdir(parents=True, exist_ok=True)
    (ssl_dir / "cert.pem").symlink_to("/etc/ssl/certs/ca-certificates.crt")
    (ssl_dir / "certs").symlink_to("/etc/ssl/certs")
    tmp = rootfs / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def writable_dirs() -> tuple[str, ...]:
    """Paths owned by the non-root user: volumes in Kubernetes, plain directories elsewhere."""
    return (STATE_DIR, CACHE_DIR)


def build(rootfs: Path, cache: Path, progress: Progress) -> list[Deb]:
    """Make ``rootfs`` (an empty directory): Debian's packages, pruned and configured."""
    arch = dpkg_architecture()
    debs = resolve(arch)
    check_closure(debs)
    paths = fetch(debs, cache, progress)
    progress(f"unpacking {len(debs)} Debian packages ({arch})")
    extract(debs, paths, rootfs)
    prune(rootfs)
    configure(rootfs)
    return debs
