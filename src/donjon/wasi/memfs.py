"""Read-only files and directories held in memory, for the fd table.

The caller (a Keep) hands in bytes that must never reach the host's disk, such
as secrets released after attestation. The guest reads them through the usual
calls (``path_open``, ``fd_read``, ``fd_pread``, ``fd_seek``, ``fd_filestat_get``,
``fd_readdir``); anything that would write is refused for lack of rights, as on
a read-only preopen. This module knows nothing of where the bytes come from.
"""

from __future__ import annotations

import zlib

from donjon.wasi import abi
from donjon.wasi.api import MemoryDir
from donjon.wasi.errors import WasiError
from donjon.wasi.fdtable import KIND_MEMDIR, KIND_MEMFILE, FdEntry, memdir_entry, memfile_entry

_WRITE_OFLAGS = abi.OFLAGS_CREAT | abi.OFLAGS_TRUNC | abi.OFLAGS_EXCL


def _ino(name: bytes) -> int:
    return zlib.crc32(name) + 1


def read(entry: FdEntry, bufs: list[memoryview]) -> int:
    """Copy from the current offset into ``bufs``; advance the offset."""
    n = pread(entry, bufs, entry.offset)
    entry.offset += n
    return n


def pread(entry: FdEntry, bufs: list[memoryview], offset: int) -> int:
    if entry.kind != KIND_MEMFILE:
        raise WasiError(abi.EISDIR if entry.kind == KIND_MEMDIR else abi.EBADF)
    data: bytes = entry.memory
    total = 0
    for part in bufs:
        start = offset + total
        chunk = data[start : start + len(part)]
        part[: len(chunk)] = chunk
        total += len(chunk)
        if len(chunk) < len(part):
            break
    return total


def seek(entry: FdEntry, delta: int, whence: int) -> int:
    if entry.kind != KIND_MEMFILE:
        raise WasiError(abi.EBADF)
    base = (0, entry.offset, len(entry.memory))[whence]
    position = base + delta
    if position < 0:
        raise WasiError(abi.EINVAL)
    entry.offset = position
    return position


def filestat(entry: FdEntry, name: bytes = b"") -> tuple[int, ...]:
    if entry.kind == KIND_MEMFILE:
        return (0, _ino(name), abi.FILETYPE_REGULAR_FILE, 1, len(entry.memory), 0, 0, 0)
    return (0, _ino(entry.preopen or b"/"), abi.FILETYPE_DIRECTORY, 1, 0, 0, 0, 0)


def dirents(entry: FdEntry) -> list[tuple[bytes, int, int]]:
    """``.``, ``..``, then the files in name order, as fd_readdir lists them."""
    listing = [
        (b".", _ino(entry.preopen or b"/"), abi.FILETYPE_DIRECTORY),
        (b"..", 0, abi.FILETYPE_DIRECTORY),
    ]
    for name in sorted(entry.memory):
        raw = name.encode()
        listing.append((raw, _ino(raw), abi.FILETYPE_REGULAR_FILE))
    return listing


def _lookup(parent: FdEntry, path: str) -> str | None:
    """The file a path names in ``parent`` (``None``: the directory itself)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if path.startswith("/"):
        raise WasiError(abi.EPERM)  # as for host preopens: an absolute path leaves the sandbox
    if not parts:
        return None
    if ".." in parts or len(parts) > 1:
        raise WasiError(abi.EPERM if ".." in parts else abi.ENOENT)
    if parts[0] not in parent.memory:
        raise WasiError(abi.ENOENT)
    if path.endswith("/"):
        raise WasiError(abi.ENOTDIR)
    return parts[0]


def open_path(parent: FdEntry, path: str, oflags: int, rights: int, fdflags: int) -> FdEntry:
    """``path_open`` under an in-memory directory: reading only."""
    parent.require(abi.RIGHT_PATH_OPEN)
    if oflags & _WRITE_OFLAGS or rights & abi.RIGHT_FD_WRITE or fdflags & abi.FDFLAGS_APPEND:
        raise WasiError(abi.ENOTCAPABLE)
    name = _lookup(parent, path)
    if name is None:
        return memdir_entry(MemoryDir("", parent.memory), preopened=False)
    if oflags & abi.OFLAGS_DIRECTORY:
        raise WasiError(abi.ENOTDIR)
    entry = memfile_entry(parent.memory[name])
    entry.flags = fdflags & abi.FDFLAGS_NONBLOCK
    return entry


def path_filestat(parent: FdEntry, path: str) -> tuple[int, ...]:
    parent.require(abi.RIGHT_PATH_FILESTAT_GET)
    name = _lookup(parent, path)
    if name is None:
        return filestat(parent)
    return filestat(memfile_entry(parent.memory[name]), name.encode())
