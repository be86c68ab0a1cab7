"""Atomic, permission-aware file writes, shared by every subpackage.

A crash or a full disk must never leave half a key, half a cache entry or a key
readable by others: the data goes to a temporary file in the same directory,
created with its final mode, is flushed (and fsynced when it must survive a
power cut), then renamed over the target, so readers see the old or the new
file, never a mix. The temporary file is removed when anything fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path


def write_bytes(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    overwrite: bool = True,
    durable: bool = True,
    prefix: str | None = None,
    suffix: str = ".tmp",
    make_parents: bool = True,
) -> None:
    """Replace ``path`` with ``data`` atomically; parents are created unless ``make_parents``
    is False (then a missing directory is FileNotFoundError naming the directory).

    ``overwrite=False`` refuses an existing target (FileExistsError).
    ``durable=False`` skips the fsyncs, for caches that can be rebuilt.
    An error names ``path`` (or its directory), never the temporary file.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(errno.EEXIST, "refusing to overwrite an existing file", str(path))
    directory = path.parent
    if make_parents:
        directory.mkdir(parents=True, exist_ok=True)
    elif not directory.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(directory))
    try:
        _write(path, data, mode=mode, durable=durable, prefix=prefix, suffix=suffix)
    except OSError as exc:
        if exc.filename is None or exc.filename == str(path):
            raise
        # mkstemp, write and rename report the temporary name: say which file it was for.
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    if durable:
        _fsync_dir(directory)


def _write(
    path: Path, data: bytes, *, mode: int, durable: bool, prefix: str | None, suffix: str
) -> None:
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix, dir=path.parent
    )
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(
    path: Path,
    text: str,
    *,
    mode: int = 0o644,
    overwrite: bool = True,
    encoding: str = "utf-8",
) -> None:
    """``write_bytes`` for text."""
    write_bytes(path, text.encode(encoding), mode=mode, overwrite=overwrite)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) readable only by its owner."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable; not every platform can fsync a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = ["make_private_dir", "write_bytes", "write_text"]
