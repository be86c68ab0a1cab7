"""The guest's file descriptor table.

Order matters to wasi-libc: 0-2 stdio, then preopened directories, then sockets
and streams. Every entry holds its own host fd (a ``dup`` for inherited stdio),
so a guest ``fd_close(1)`` never closes the host process's stdout.
"""

from __future__ import annotations

import os
import stat
import sys

from donjon.wasi import abi
from donjon.wasi.api import MemoryDir, MemoryFile, StdioKind
from donjon.wasi.errors import WasiError

try:
    import fcntl
except ImportError:  # pragma: no cover - not a supported platform, kept importable
    fcntl = None  # type: ignore[assignment]

#: ``typing``, ``dataclasses``, ``socket`` and ``ssl`` cost milliseconds to import;
#: mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from donjon.wasi.api import Preopen, Stdio
    from donjon.wasi.streams import ByteStream, Listener

KIND_FILE = 0  # a host fd: regular file, tty, pipe, directory
KIND_SOCKET = 1  # a connected stream (socket.socket or ssl.SSLSocket)
KIND_LISTENER = 2  # a Listener for sock_accept
KIND_PYSTREAM = 3  # a Python file object without a usable fileno()
KIND_MEMFILE = 4  # a read-only file held in memory (``memory`` is its bytes)
KIND_MEMDIR = 5  # a read-only directory held in memory (``memory`` maps names to bytes)


class FdEntry:
    """One guest fd (a slotted class written out: it is built on every start and path_open)."""

    __slots__ = (
        "dirents",
        "fast_read",
        "fast_write",
        "filetype",
        "flags",
        "hostfd",
        "kind",
        "memory",
        "offset",
        "owns_fd",
        "preopen",
        "rbuf",
        "readonly",
        "rights_base",
        "rights_inheriting",
        "shared",
        "shut_wr",
        "sock",
        "stream",
        "tls",
    )

    def __init__(
        self,
        kind: int,
        filetype: int,
        hostfd: int,
        rights_base: int,
        rights_inheriting: int,
        flags: int = 0,
        preopen: bytes | None = None,
        readonly: bool = False,
        sock: Any = None,
        stream: BinaryIO | None = None,
        owns_fd: bool = True,
        shared: bool = False,
        tls: bool = False,
        memory: Any = None,
    ) -> None:
        self.kind = kind
        self.filetype = filetype
        self.hostfd = hostfd
        self.rights_base = rights_base
        self.rights_inheriting = rights_inheriting
        self.flags = flags
        #: guest name of a preopened directory (fd_prestat_get answers only for these)
        self.preopen = preopen
        #: entries under a read-only preopen can never gain writing rights
        self.readonly = readonly
        self.sock = sock
        self.stream = stream
        self.owns_fd = owns_fd
        #: fd_readdir snapshot: (cookie-indexed list of (name, ino, type)) built at cookie 0
        self.dirents: list[tuple[bytes, int, int]] | None = None
        #: sockets: bytes already received but not yet consumed (MSG_PEEK is emulated here,
        #: since an SSLSocket cannot peek), and whether the guest shut down its write side
        self.rbuf = bytearray()
        self.shut_wr = False
        #: the host file description is shared with the host process (inherited stdio):
        #: its status flags (O_APPEND) must not be changed under the host's feet
        self.shared = shared
        #: the socket is an ``ssl.SSLSocket`` (its ``pending()`` bytes are readable)
        self.tls = tls
        #: host fd that fd_write / fd_read may use directly with no further checks, else -1
        self.fast_write = -1
        self.fast_read = -1
        #: in-memory entries: the file's bytes or the directory's files, and the read offset
        self.memory = memory
        self.offset = 0

    def __repr__(self) -> str:
        return f"FdEntry(kind={self.kind}, filetype={self.filetype}, hostfd={self.hostfd})"

    def require(self, rights: int) -> None:
        if self.rights_base & rights != rights:
            raise WasiError(abi.ENOTCAPABLE)

    @property
    def is_dir(self) -> bool:
        return self.filetype == abi.FILETYPE_DIRECTORY


def filetype_of_mode(mode: int) -> int:
    if stat.S_ISREG(mode):
        return abi.FILETYPE_REGULAR_FILE
    if stat.S_ISDIR(mode):
        return abi.FILETYPE_DIRECTORY
    if stat.S_ISCHR(mode):
        return abi.FILETYPE_CHARACTER_DEVICE
    if stat.S_ISBLK(mode):
        return abi.FILETYPE_BLOCK_DEVICE
    if stat.S_ISLNK(mode):
        return abi.FILETYPE_SYMBOLIC_LINK
    if stat.S_ISSOCK(mode):
        return abi.FILETYPE_SOCKET_STREAM
    return abi.FILETYPE_UNKNOWN


def _stdio_entry(number: int, spec: Stdio) -> FdEntry:
    """Open one of fds 0-2 as the spec says."""
    reading = number == 0
    rights = abi.RIGHTS_TTY if not reading else abi.RIGHTS_TTY & ~abi.RIGHT_FD_WRITE
    if not reading:
        rights &= ~abi.RIGHT_FD_READ
    shared = spec.kind in (StdioKind.INHERIT, StdioKind.STREAM)
    if spec.kind == StdioKind.INHERIT:
        hostfd = os.dup(number)
    elif spec.kind == StdioKind.NULL:
        hostfd = os.open(os.devnull, os.O_RDONLY if reading else os.O_WRONLY)
    elif spec.kind == StdioKind.FILE:
        if spec.path is None:
            raise ValueError(f"stdio {number}: kind=file needs a path")
        flags = os.O_RDONLY if reading else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        hostfd = os.open(spec.path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    else:
        stream = spec.stream
        if stream is None:
            raise ValueError(f"stdio {number}: kind=stream needs a stream")
        try:
            if not reading:
                stream.flush()
            hostfd = os.dup(stream.fileno())
        except (OSError, AttributeError, ValueError):
            # io.BytesIO and friends: no fd; go through the object's read/write.
            return FdEntry(KIND_PYSTREAM, abi.FILETYPE_UNKNOWN, -1, rights, 0, stream=stream)
    try:
        filetype = abi.FILETYPE_CHARACTER_DEVICE if os.isatty(hostfd) else abi.FILETYPE_UNKNOWN
        if filetype == abi.FILETYPE_UNKNOWN:
            mode = os.fstat(hostfd).st_mode
            if stat.S_ISREG(mode):
                filetype = abi.FILETYPE_REGULAR_FILE
                rights |= abi.RIGHTS_REGULAR_FILE & ~abi.RIGHTS_WRITING
                if not reading:
                    rights |= abi.RIGHT_FD_WRITE
            elif stat.S_ISFIFO(mode):
                grow_pipe(hostfd)
    except OSError:
        filetype = abi.FILETYPE_UNKNOWN
    return FdEntry(KIND_FILE, filetype, hostfd, rights, 0, shared=shared)


#: pipe capacity asked for on stdio pipes (Linux's default maximum for unprivileged users)
PIPE_CAPACITY = 1 << 20


def grow_pipe(hostfd: int) -> None:
    """Give a stdio pipe room for several of the guest's writes (Linux; best effort).

    A 64 KiB write into a default 64 KiB pipe fills it, so the writer sleeps
    until the reader has drained everything and then wakes it: two cross-CPU
    wake-ups per write, which cost more than the copy on an idle VM. With room
    for many writes the two sides run side by side. The guest cannot tell; a
    refusal (the user's pipe quota, ``fs.pipe-max-size``) leaves the pipe as it was.
    """
    if fcntl is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        if fcntl.fcntl(hostfd, fcntl.F_GETPIPE_SZ) < PIPE_CAPACITY:
            fcntl.fcntl(hostfd, fcntl.F_SETPIPE_SZ, PIPE_CAPACITY)
    except OSError:
        pass


def _preopen_entry(preopen: Preopen) -> FdEntry:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    hostfd = os.open(preopen.host_path, flags)
    base = abi.RIGHTS_DIRECTORY
    inheriting = abi.RIGHTS_DIRECTORY | abi.RIGHTS_REGULAR_FILE
    if not preopen.writable:
        base &= ~abi.RIGHTS_WRITING
        inheriting &= ~abi.RIGHTS_WRITING
    return FdEntry(
        KIND_FILE,
        abi.FILETYPE_DIRECTORY,
        hostfd,
        base,
        inheriting,
        preopen=preopen.guest_path.encode(),
        readonly=not preopen.writable,
    )


#: An in-memory file can be read, seeked, stat'ed and polled; never written.
RIGHTS_MEMFILE = (
    abi.RIGHT_FD_READ
    | abi.RIGHT_FD_SEEK
    | abi.RIGHT_FD_TELL
    | abi.RIGHT_FD_FILESTAT_GET
    | abi.RIGHT_POLL_FD_READWRITE
)
#: An in-memory directory can open and stat its files and list them.
RIGHTS_MEMDIR = (
    abi.RIGHT_PATH_OPEN
    | abi.RIGHT_FD_READDIR
    | abi.RIGHT_PATH_FILESTAT_GET
    | abi.RIGHT_FD_FILESTAT_GET
    | abi.RIGHT_POLL_FD_READWRITE
)


def memfile_entry(data: bytes) -> FdEntry:
    return FdEntry(
        KIND_MEMFILE, abi.FILETYPE_REGULAR_FILE, -1, RIGHTS_MEMFILE, 0, memory=data, readonly=True
    )


def memdir_entry(spec: MemoryDir, *, preopened: bool = True) -> FdEntry:
    for name in spec.files:
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise ValueError(f"in-memory directory {spec.guest_path}: bad file name {name!r}")
    return FdEntry(
        KIND_MEMDIR,
        abi.FILETYPE_DIRECTORY,
        -1,
        RIGHTS_MEMDIR,
        RIGHTS_MEMFILE,
        preopen=spec.guest_path.encode() if preopened else None,
        readonly=True,
        memory=dict(spec.files),
    )


def socket_entry(sock: ByteStream, *, nonblock: bool = False) -> FdEntry:
    """A connected stream. The host socket is always non-blocking; the guest flag is ours."""
    sock.setblocking(False)
    ssl = sys.modules.get("ssl")  # not imported: then it cannot be an SSLSocket
    return FdEntry(
        KIND_SOCKET,
        abi.FILETYPE_SOCKET_STREAM,
        sock.fileno(),
        abi.RIGHTS_SOCKET,
        0,
        flags=abi.FDFLAGS_NONBLOCK if nonblock else 0,
        sock=sock,
        owns_fd=False,
        tls=ssl is not None and isinstance(sock, ssl.SSLSocket),
    )


def listener_entry(listener: Listener) -> FdEntry:
    listener.setblocking(False)
    return FdEntry(
        KIND_LISTENER,
        abi.FILETYPE_SOCKET_STREAM,
        listener.fileno(),
        abi.RIGHTS_LISTENER,
        abi.RIGHTS_SOCKET,
        sock=listener,
        owns_fd=False,
    )


def is_listener(obj: object) -> bool:
    """A listening socket, or a Keep listener object (anything with accept but no recv)."""
    import socket

    from donjon.wasi.streams import Listener

    if isinstance(obj, socket.socket):
        acceptconn = getattr(socket, "SO_ACCEPTCONN", None)
        if acceptconn is not None:
            try:
                return bool(obj.getsockopt(socket.SOL_SOCKET, acceptconn))
            except OSError:
                pass
        try:  # no SO_ACCEPTCONN here: a stream socket without a peer is a listener
            obj.getpeername()
        except OSError:
            return obj.type == socket.SOCK_STREAM
        return False
    return isinstance(obj, Listener) and not hasattr(obj, "recv")


_WATCHED = (abi.FILETYPE_UNKNOWN, abi.FILETYPE_CHARACTER_DEVICE)


class FdTable:
    """fd number -> entry.

    Numbers are handed out as wasmtime does (checked against its CLI): freed
    numbers first, oldest free first, else one past the highest ever used.
    """

    def __init__(self) -> None:
        self.entries: dict[int, FdEntry] = {}
        #: freed numbers, oldest first (a short list: popping its head is cheap)
        self._free: list[int] = []
        self._next = 0
        #: blocking reads/writes on pipes and ttys must be watched (a time limit is set)
        self.watch = False

    def refresh(self, entry: FdEntry) -> None:
        """Recompute the entry's fast-path fds; call after any change to rights or flags."""
        plain = (
            entry.kind == KIND_FILE
            and not entry.is_dir
            and not (
                entry.filetype in _WATCHED and (self.watch or entry.flags & abi.FDFLAGS_NONBLOCK)
            )
        )
        entry.fast_write = entry.hostfd if plain and entry.rights_base & abi.RIGHT_FD_WRITE else -1
        entry.fast_read = entry.hostfd if plain and entry.rights_base & abi.RIGHT_FD_READ else -1

    def set_watch(self, watch: bool) -> None:
        self.watch = watch
        for entry in self.entries.values():
            self.refresh(entry)

    @classmethod
    def build(
        cls,
        stdio: tuple[Stdio, Stdio, Stdio],
        preopens: list[Preopen | MemoryDir],
        streams: list[Any],
    ) -> FdTable:
        table = cls()
        try:
            for number, spec in enumerate(stdio):
                table.add(_stdio_entry(number, spec))
            for preopen in preopens:
                if isinstance(preopen, MemoryDir):
                    table.add(memdir_entry(preopen))
                else:
                    table.add(_preopen_entry(preopen))
            for obj in streams:
                if isinstance(obj, MemoryFile):
                    table.add(memfile_entry(obj.data))
                else:
                    table.add(listener_entry(obj) if is_listener(obj) else socket_entry(obj))
        except BaseException:
            table.close_all()
            raise
        return table

    def get(self, fd: int) -> FdEntry:
        entry = self.entries.get(fd)
        if entry is None:
            raise WasiError(abi.EBADF)
        return entry

    def add(self, entry: FdEntry) -> int:
        entries = self.entries
        fd = -1
        while self._free:
            candidate = self._free.pop(0)
            if candidate not in entries:
                fd = candidate
                break
        if fd < 0:
            fd = self._next
            self._next += 1
        entries[fd] = entry
        self.refresh(entry)
        return fd

    def close(self, fd: int) -> None:
        entry = self.entries.pop(fd, None)
        if entry is None:
            raise WasiError(abi.EBADF)
        self._free.append(fd)
        close_entry(entry)

    def renumber(self, src: int, dst: int) -> None:
        entry = self.get(src)
        self.get(dst)
        if src == dst:
            return
        old = self.entries.pop(dst)
        close_entry(old)
        self.entries[dst] = self.entries.pop(src)
        self._free.append(src)
        del entry

    def has_sockets(self) -> bool:
        return any(e.kind in (KIND_SOCKET, KIND_LISTENER) for e in self.entries.values())

    def close_all(self) -> None:
        for fd in sorted(self.entries):
            close_entry(self.entries.pop(fd))


def close_entry(entry: FdEntry) -> None:
    if entry.kind in (KIND_SOCKET, KIND_LISTENER):
        try:  # noqa: SIM105 (contextlib costs milliseconds to import)
            entry.sock.close()
        except OSError:
            pass
        return
    if entry.owns_fd and entry.hostfd >= 0:
        try:  # noqa: SIM105 (contextlib costs milliseconds to import)
            os.close(entry.hostfd)
        except OSError:
            pass
