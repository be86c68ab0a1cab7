"""A package directory as layers, and layers back as files: deterministic and strict.

Static files travel as one uncompressed tar layer built the same way every time
(sorted names, zero times and owners, 0644/0755 modes), so pushing the same
directory twice gives the same digest. Unpacking accepts only regular files and
directories with relative names that stay inside the target: no links, devices,
absolute paths or ``..``.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from donjon.errors import UsageError
from donjon.keep.oci.artifact import CONFIG_NAMES

WASM_NAME = "main.wasm"
#: Files of a directory that never go into the static-files layer.
_SKIPPED = frozenset({WASM_NAME, *CONFIG_NAMES})
MAX_FILES = 10_000


class BundleError(UsageError):
    """A package directory or a files layer that cannot be packed or unpacked safely."""


@dataclass(frozen=True)
class PackageFiles:
    """A package read from a directory: every byte in memory."""

    name: str
    wasm: bytes
    config_name: str | None
    config: bytes | None
    files_tar: bytes | None
    #: Where they were read (relative paths in the config resolve here).
    directory: Path


def read_dir(path: Path) -> PackageFiles:
    """Read ``main.wasm``, the config and every other regular file under ``path``."""
    if not path.is_dir():
        raise BundleError(f"{path}: not a package directory")
    wasm_path = path / WASM_NAME
    if not wasm_path.is_file():
        raise BundleError(f"{path}: no {WASM_NAME} in this directory")
    configs = [n for n in CONFIG_NAMES if (path / n).is_file()]
    if len(configs) > 1:
        raise BundleError(f"{path}: has both Donjon.toml and Enarx.toml; remove one")
    config_name = configs[0] if configs else None
    files = sorted(_static_files(path))
    tar = _tar(path, files) if files else None
    return PackageFiles(
        name=path.resolve().name or "workload",
        wasm=wasm_path.read_bytes(),
        config_name=config_name,
        config=(path / config_name).read_bytes() if config_name else None,
        files_tar=tar,
        directory=path,
    )


def _static_files(root: Path) -> Iterator[str]:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in _SKIPPED:
                continue
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"{full}: symbolic links are not packed; copy the file in")
            if not stat.S_ISREG(mode):
                raise BundleError(f"{full}: not a regular file")
            count += 1
            if count > MAX_FILES:
                raise BundleError(f"{root}: more than {MAX_FILES} files")
            yield rel


def _tar(root: Path, names: list[str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in names:
            data = (root / rel).read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o755 if os.access(root / rel, os.X_OK) else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _safe_name(name: str, where: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\0" in name:
        raise BundleError(f"{where}: member {name!r} would land outside the package")
    return path


def tar_members(data: bytes, where: str, *, max_total: int) -> dict[str, bytes]:
    """Every regular file of an uncompressed tar, checked; directories are implied."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                path = _safe_name(member.name, where)
                if member.isdir():
                    continue
                if not member.isreg():
                    raise BundleError(f"{where}: member {member.name!r} is not a regular file")
                total += member.size
                if total > max_total or len(files) >= MAX_FILES:
                    raise BundleError(f"{where}: unpacks to more than {max_total} bytes or files")
                handle = tar.extractfile(member)
                if handle is None:
                    raise BundleError(f"{where}: member {member.name!r} cannot be read")
                key = path.as_posix()
                if key in files:
                    raise BundleError(f"{where}: member {member.name!r} appears twice")
                files[key] = handle.read()
    except tarfile.TarError as exc:
        raise BundleError(f"{where}: not a valid tar: {exc}") from None
    return files


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Write checked members under ``root`` (which must exist), refusing any clash."""
    for rel, data in files.items():
        target = root.joinpath(*PurePosixPath(rel).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644
        )
        with os.fdopen(fd, "wb") as out:
            out.write(data)
