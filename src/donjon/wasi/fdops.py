"""``fd_*`` calls: reading, writing, seeking, metadata, preopens, directory listing.

``fd_read`` and ``fd_write`` are the hot path: they hand memoryview slices of
guest memory straight to ``os.readv``/``os.writev`` (zero copy) and avoid every
avoidable Python call.
"""

from __future__ import annotations

import os
import time

from donjon.wasi import abi, memfs
from donjon.wasi.context import HostContext, ready
from donjon.wasi.errors import WasiError
from donjon.wasi.fdtable import (
    KIND_FILE,
    KIND_MEMDIR,
    KIND_MEMFILE,
    KIND_PYSTREAM,
    FdEntry,
    filetype_of_mode,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not a supported platform, kept importable
    fcntl = None  # type: ignore[assignment]

#: ``typing`` and ``collections`` cost milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from donjon.wasi.sockets import SocketCalls

_IOVEC = abi.IOVEC.unpack_from
_U32 = abi.U32.pack_into
_RIGHT_READ = abi.RIGHT_FD_READ
_RIGHT_WRITE = abi.RIGHT_FD_WRITE
_NONBLOCK = abi.FDFLAGS_NONBLOCK
_WATCHED = (abi.FILETYPE_UNKNOWN, abi.FILETYPE_CHARACTER_DEVICE)
_U64_MAX = 0xFFFFFFFFFFFFFFFF


def _iov_max() -> int:
    try:
        return max(16, os.sysconf("SC_IOV_MAX"))
    except (ValueError, OSError, AttributeError):
        return 1024


_IOV_MAX = _iov_max()


def writev(fd: int, bufs: list[memoryview]) -> int:
    """``os.writev`` for any number of buffers (the host refuses more than IOV_MAX)."""
    if len(bufs) <= _IOV_MAX:  # the hot path: one system call, no extra frame
        return os.writev(fd, bufs) if bufs else 0
    return _in_chunks(os.writev, fd, bufs)


def readv(fd: int, bufs: list[memoryview]) -> int:
    """``os.readv`` for any number of buffers; stops at the first short read."""
    if len(bufs) <= _IOV_MAX:
        return os.readv(fd, bufs) if bufs else 0
    return _in_chunks(os.readv, fd, bufs)


def _in_chunks(op: Callable[[int, list[memoryview]], int], fd: int, bufs: list[memoryview]) -> int:
    """IOV_MAX buffers per call, stopping at the first short transfer."""
    done = 0
    for start in range(0, len(bufs), _IOV_MAX):
        chunk = bufs[start : start + _IOV_MAX]
        n = op(fd, chunk)
        done += n
        if n < sum(len(b) for b in chunk):
            break
    return done


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def filestat_tuple(st: os.stat_result, filetype: int | None = None) -> tuple[int, ...]:
    return (
        st.st_dev & _U64_MAX,
        st.st_ino & _U64_MAX,
        filetype_of_mode(st.st_mode) if filetype is None else filetype,
        st.st_nlink,
        st.st_size,
        st.st_atime_ns & _U64_MAX,
        st.st_mtime_ns & _U64_MAX,
        st.st_ctime_ns & _U64_MAX,
    )


def resolve_times(
    atim: int, mtim: int, fstflags: int, current: tuple[int, int] | None
) -> tuple[int, int] | None:
    """The (atime, mtime) pair to set, or None when nothing changes. Validates the flags."""
    if fstflags & ~0xF:
        raise WasiError(abi.EINVAL)
    if fstflags & abi.FSTFLAGS_ATIM and fstflags & abi.FSTFLAGS_ATIM_NOW:
        raise WasiError(abi.EINVAL)
    if fstflags & abi.FSTFLAGS_MTIM and fstflags & abi.FSTFLAGS_MTIM_NOW:
        raise WasiError(abi.EINVAL)
    if not fstflags:
        return None
    now = time.time_ns()
    old_a, old_m = current if current is not None else (now, now)
    new_a = old_a
    new_m = old_m
    if fstflags & abi.FSTFLAGS_ATIM:
        new_a = atim
    elif fstflags & abi.FSTFLAGS_ATIM_NOW:
        new_a = now
    if fstflags & abi.FSTFLAGS_MTIM:
        new_m = mtim
    elif fstflags & abi.FSTFLAGS_MTIM_NOW:
        new_m = now
    return new_a, new_m


class FdCalls:
    def __init__(self, ctx: HostContext, sockets: Callable[[], SocketCalls]) -> None:
        self.ctx = ctx
        self.entries = ctx.fds.entries
        #: the socket calls, built on first use (only socket entries need them)
        self.sockets = sockets
        self.fd_write = self._fast_write()
        self.fd_read = self._fast_read()

    # --- the hot path ------------------------------------------------------------------

    def _fast_write(self) -> Callable[[int, int, int, int], int]:
        """fd_write for the common case (one iovec, a plain fd), everything in locals.

        Anything unusual (several iovecs, sockets, a pointer past the view, a
        watched pipe) falls through to :meth:`write_slow`, which does every check.
        """
        get = self.entries.get
        ctx = self.ctx
        write = os.write
        slow = self.write_slow
        from_oserror = abi.from_oserror

        def fd_write(fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
            entry = get(fd)
            if entry is not None and entry.fast_write >= 0 and iovs_len == 1:
                mem = ctx.memory
                if mem is not None and not (iovs | nwritten) & 3:
                    size = mem.size
                    if iovs + 8 <= size and nwritten + 4 <= size:
                        words = mem.words
                        index = iovs >> 2
                        buf = words[index]
                        end = buf + words[index + 1]
                        if end <= size:
                            try:
                                n = write(entry.fast_write, mem.view[buf:end])
                            except OSError as exc:
                                return from_oserror(exc)
                            words[nwritten >> 2] = n
                            return 0
            return slow(fd, iovs, iovs_len, nwritten)

        return fd_write

    def _fast_read(self) -> Callable[[int, int, int, int], int]:
        get = self.entries.get
        ctx = self.ctx
        slow = self.read_slow
        from_oserror = abi.from_oserror

        def fd_read(fd: int, iovs: int, iovs_len: int, nread: int) -> int:
            entry = get(fd)
            if entry is not None and entry.fast_read >= 0:
                mem = ctx.memory
                if mem is not None and nread + 4 <= mem.size and not nread & 3:
                    try:
                        bufs = mem.iovecs(iovs, iovs_len)
                        n = readv(entry.fast_read, bufs)
                    except WasiError as exc:
                        return exc.errno
                    except OSError as exc:
                        return from_oserror(exc)
                    mem.words[nread >> 2] = n
                    return 0
            return slow(fd, iovs, iovs_len, nread)

        return fd_read

    def write_slow(self, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
        try:
            entry = self.entries[fd]
        except KeyError:
            return abi.EBADF
        if not entry.rights_base & _RIGHT_WRITE:
            return abi.EBADF
        mem = self.ctx.memory
        if mem is None:
            return abi.EFAULT
        try:
            if entry.kind == KIND_FILE:
                if entry.filetype in _WATCHED and (self.ctx.bounded or entry.flags & _NONBLOCK):
                    self._wait(entry, True)
                if iovs_len == 1:
                    if iovs + 8 > mem.size:
                        mem.check(iovs, 8)
                    buf, length = _IOVEC(mem.view, iovs)
                    if buf + length > mem.size:
                        mem.check(buf, length)
                    n = os.write(entry.hostfd, mem.view[buf : buf + length])
                else:
                    n = writev(entry.hostfd, mem.iovecs(iovs, iovs_len))
            elif entry.kind == KIND_PYSTREAM:
                n = 0
                for part in mem.iovecs(iovs, iovs_len):
                    n += entry.stream.write(bytes(part)) or 0  # type: ignore[union-attr]
                entry.stream.flush()  # type: ignore[union-attr]
            else:
                n = self.sockets().send(entry, mem.iovecs(iovs, iovs_len))
            if nwritten + 4 > mem.size or nwritten & 3:
                mem.set_u32(nwritten, n)
            else:
                _U32(mem.view, nwritten, n)
            return abi.SUCCESS
        except WasiError as exc:
            return exc.errno
        except OSError as exc:
            return abi.from_oserror(exc)

    def read_slow(self, fd: int, iovs: int, iovs_len: int, nread: int) -> int:
        try:
            entry = self.entries[fd]
        except KeyError:
            return abi.EBADF
        if not entry.rights_base & _RIGHT_READ:
            return abi.EBADF
        mem = self.ctx.memory
        if mem is None:
            return abi.EFAULT
        try:
            bufs = mem.iovecs(iovs, iovs_len)
            if entry.kind == KIND_FILE:
                if entry.filetype in _WATCHED and (self.ctx.bounded or entry.flags & _NONBLOCK):
                    self._wait(entry, False)
                n = readv(entry.hostfd, bufs)
            elif entry.kind == KIND_MEMFILE:
                n = memfs.read(entry, bufs)
            elif entry.kind == KIND_PYSTREAM:
                n = 0
                for part in bufs:
                    got = entry.stream.readinto(part) or 0  # type: ignore[union-attr]
                    n += got
                    if got < len(part):
                        break
            else:
                n = self.sockets().recv(entry, bufs, 0)
            mem.set_u32(nread, n)
            return abi.SUCCESS
        except WasiError as exc:
            return exc.errno
        except OSError as exc:
            if entry.is_dir:
                return abi.EBADF
            return abi.from_oserror(exc)

    def _wait(self, entry: FdEntry, write: bool) -> None:
        if entry.flags & _NONBLOCK:
            if not ready(entry.hostfd, write, 0):
                raise WasiError(abi.EAGAIN)
            return
        self.ctx.wait(entry.hostfd, write, self.ctx.call_deadline())

    # --- positioned I/O and seeking -----------------------------------------------------

    def _file(self, fd: int, rights: int = 0) -> FdEntry:
        entry = self.ctx.fds.get(fd)
        if entry.kind != KIND_FILE or entry.is_dir:
            raise WasiError(abi.EBADF)
        if rights and entry.rights_base & rights != rights:
            raise WasiError(abi.EBADF if rights & (_RIGHT_READ | _RIGHT_WRITE) else abi.ENOTCAPABLE)
        return entry

    def _seekable(self, entry: FdEntry) -> None:
        if entry.filetype not in (abi.FILETYPE_REGULAR_FILE, abi.FILETYPE_BLOCK_DEVICE):
            raise WasiError(abi.ESPIPE)

    def fd_pread(self, fd: int, iovs: int, iovs_len: int, offset: int, nread: int) -> int:
        memory = self.ctx.fds.get(fd)
        if memory.kind == KIND_MEMFILE:
            memory.require(_RIGHT_READ)
            n = memfs.pread(memory, self.ctx.mem.iovecs(iovs, iovs_len), offset)
            self.ctx.mem.set_u32(nread, n)
            return abi.SUCCESS
        entry = self._file(fd, _RIGHT_READ)
        self._seekable(entry)
        if offset > 1 << 63:
            raise WasiError(abi.EINVAL)
        bufs = self.ctx.mem.iovecs(iovs, iovs_len)
        total = 0
        for part in bufs:
            if not len(part):
                continue
            data = os.pread(entry.hostfd, len(part), offset + total)
            part[: len(data)] = data
            total += len(data)
            if len(data) < len(part):
                break
        self.ctx.mem.set_u32(nread, total)
        return abi.SUCCESS

    def fd_pwrite(self, fd: int, iovs: int, iovs_len: int, offset: int, nwritten: int) -> int:
        entry = self._file(fd, _RIGHT_WRITE)
        self._seekable(entry)
        if offset > 1 << 63:
            raise WasiError(abi.EINVAL)
        bufs = self.ctx.mem.iovecs(iovs, iovs_len)
        total = 0
        # pwrite never moves the file offset; on an O_APPEND fd Linux appends anyway,
        # which the WASI testsuite accepts (pwrite-with-append.c).
        for part in bufs:
            if not len(part):
                continue
            n = os.pwrite(entry.hostfd, part, offset + total)
            total += n
            if n < len(part):
                break
        self.ctx.mem.set_u32(nwritten, total)
        return abi.SUCCESS

    def fd_seek(self, fd: int, offset: int, whence: int, newoffset: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.kind == KIND_MEMFILE:
            if whence > abi.WHENCE_END:
                raise WasiError(abi.EINVAL)
            entry.require(abi.RIGHT_FD_SEEK)
            self.ctx.mem.set_u64(newoffset, memfs.seek(entry, _signed64(offset), whence))
            return abi.SUCCESS
        if entry.kind != KIND_FILE or entry.is_dir:
            raise WasiError(abi.EBADF)
        self._seekable(entry)
        delta = _signed64(offset)
        if whence > abi.WHENCE_END:
            raise WasiError(abi.EINVAL)
        needed = abi.RIGHT_FD_TELL if delta == 0 and whence == abi.WHENCE_CUR else abi.RIGHT_FD_SEEK
        entry.require(needed)
        host_whence = (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END)[whence]
        pos = os.lseek(entry.hostfd, delta, host_whence)
        self.ctx.mem.set_u64(newoffset, pos)
        return abi.SUCCESS

    def fd_tell(self, fd: int, out: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.kind == KIND_MEMFILE:
            entry.require(abi.RIGHT_FD_TELL)
            self.ctx.mem.set_u64(out, entry.offset)
            return abi.SUCCESS
        if entry.kind != KIND_FILE or entry.is_dir:
            raise WasiError(abi.EBADF)
        self._seekable(entry)
        entry.require(abi.RIGHT_FD_TELL)
        self.ctx.mem.set_u64(out, os.lseek(entry.hostfd, 0, os.SEEK_CUR))
        return abi.SUCCESS

    # --- sync, advise, allocate -----------------------------------------------------------

    def fd_sync(self, fd: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.kind != KIND_FILE:
            raise WasiError(abi.EBADF)
        entry.require(abi.RIGHT_FD_SYNC)
        os.fsync(entry.hostfd)
        return abi.SUCCESS

    def fd_datasync(self, fd: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.kind != KIND_FILE:
            raise WasiError(abi.EBADF)
        if entry.is_dir:
            raise WasiError(abi.EBADF)
        entry.require(abi.RIGHT_FD_DATASYNC)
        sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
        sync(entry.hostfd)
        return abi.SUCCESS

    def fd_advise(self, fd: int, offset: int, length: int, advice: int) -> int:
        entry = self._file(fd)
        if advice > abi.ADVICE_MAX:
            raise WasiError(abi.EINVAL)
        entry.require(abi.RIGHT_FD_ADVISE)
        advise = getattr(os, "posix_fadvise", None)  # Linux only; advice is only a hint
        if advise is not None and entry.filetype == abi.FILETYPE_REGULAR_FILE:
            host = (
                os.POSIX_FADV_NORMAL,
                os.POSIX_FADV_SEQUENTIAL,
                os.POSIX_FADV_RANDOM,
                os.POSIX_FADV_WILLNEED,
                os.POSIX_FADV_DONTNEED,
                os.POSIX_FADV_NOREUSE,
            )[advice]
            try:  # noqa: SIM105 (contextlib costs milliseconds to import)
                advise(entry.hostfd, _signed64(offset), _signed64(length), host)
            except OSError:
                pass
        return abi.SUCCESS

    def fd_allocate(self, fd: int, offset: int, length: int) -> int:
        entry = self._file(fd)  # BADF for a bad fd or a directory, as wasmtime
        entry.require(abi.RIGHT_FD_ALLOCATE)  # absent on read-only fds and read-only trees
        # wasmtime 49 no longer implements fd_allocate (WASI 0.2 dropped it): same answer.
        return abi.ENOTSUP

    # --- the table itself ---------------------------------------------------------------

    def fd_close(self, fd: int) -> int:
        self.ctx.fds.close(fd)
        return abi.SUCCESS

    def fd_renumber(self, fd: int, to: int) -> int:
        self.ctx.fds.renumber(fd, to)
        return abi.SUCCESS

    def fd_fdstat_get(self, fd: int, out: int) -> int:
        entry = self.ctx.fds.get(fd)
        mem = self.ctx.mem
        mem.check(out, abi.FDSTAT.size)
        abi.FDSTAT.pack_into(
            mem.view, out, entry.filetype, entry.flags, entry.rights_base, entry.rights_inheriting
        )
        return abi.SUCCESS

    def fd_fdstat_set_flags(self, fd: int, flags: int) -> int:
        entry = self.ctx.fds.get(fd)
        if flags & ~abi.FDFLAGS_ALL:
            raise WasiError(abi.EINVAL)
        entry.require(abi.RIGHT_FD_FDSTAT_SET_FLAGS)
        # The sync flags cannot change after open, but handing back the ones the fd
        # has (fcntl(F_SETFL, F_GETFL | O_NONBLOCK)) is no change.
        if (flags ^ entry.flags) & abi.FDFLAGS_SYNCS:
            raise WasiError(abi.EINVAL)
        append = bool(flags & abi.FDFLAGS_APPEND)
        if append != bool(entry.flags & abi.FDFLAGS_APPEND):
            if entry.kind != KIND_FILE or entry.is_dir or entry.shared or fcntl is None:
                raise WasiError(abi.EINVAL if entry.kind == KIND_FILE else abi.ENOTSUP)
            host = fcntl.fcntl(entry.hostfd, fcntl.F_GETFL)
            host = host | os.O_APPEND if append else host & ~os.O_APPEND
            fcntl.fcntl(entry.hostfd, fcntl.F_SETFL, host)
        # NONBLOCK is the guest's view only: the host fd may be shared (inherited stdio),
        # so the host calls wait with a zero timeout instead.
        entry.flags = flags & (abi.FDFLAGS_APPEND | abi.FDFLAGS_NONBLOCK | abi.FDFLAGS_SYNCS)
        self.ctx.fds.refresh(entry)
        return abi.SUCCESS

    def fd_fdstat_set_rights(self, fd: int, base: int, inheriting: int) -> int:
        entry = self.ctx.fds.get(fd)
        if (base | inheriting) & ~abi.RIGHTS_ALL:
            raise WasiError(abi.EINVAL)
        if base & ~entry.rights_base or inheriting & ~entry.rights_inheriting:
            raise WasiError(abi.ENOTCAPABLE)  # rights can only be dropped
        entry.rights_base = base
        entry.rights_inheriting = inheriting
        self.ctx.fds.refresh(entry)
        return abi.SUCCESS

    def fd_filestat_get(self, fd: int, out: int) -> int:
        entry = self.ctx.fds.get(fd)
        entry.require(abi.RIGHT_FD_FILESTAT_GET)
        if entry.kind in (KIND_MEMFILE, KIND_MEMDIR):
            values: tuple[int, ...] = memfs.filestat(entry)
        elif entry.kind == KIND_PYSTREAM:
            values = (0, 0, entry.filetype, 0, 0, 0, 0, 0)
        elif entry.kind == KIND_FILE and entry.filetype in _WATCHED:
            # stdio: wasmtime reports only the type.
            values = (0, 0, entry.filetype, 0, 0, 0, 0, 0)
        else:
            values = filestat_tuple(os.fstat(entry.hostfd), None)
            if entry.kind != KIND_FILE:
                values = (*values[:2], entry.filetype, *values[3:])
        mem = self.ctx.mem
        mem.check(out, abi.FILESTAT.size)
        abi.FILESTAT.pack_into(mem.view, out, *values)
        return abi.SUCCESS

    def fd_filestat_set_size(self, fd: int, size: int) -> int:
        entry = self._file(fd)
        entry.require(abi.RIGHT_FD_FILESTAT_SET_SIZE)
        if size > 1 << 63:
            raise WasiError(abi.EINVAL)
        os.ftruncate(entry.hostfd, size)
        return abi.SUCCESS

    def fd_filestat_set_times(self, fd: int, atim: int, mtim: int, fstflags: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.kind != KIND_FILE:
            raise WasiError(abi.EBADF)
        entry.require(abi.RIGHT_FD_FILESTAT_SET_TIMES)
        st = os.fstat(entry.hostfd)
        times = resolve_times(atim, mtim, fstflags, (st.st_atime_ns, st.st_mtime_ns))
        if times is not None:
            os.utime(entry.hostfd, ns=times)
        return abi.SUCCESS

    # --- preopens and directories -----------------------------------------------------------

    def fd_prestat_get(self, fd: int, out: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.preopen is None:
            raise WasiError(abi.EBADF)
        mem = self.ctx.mem
        mem.check(out, abi.PRESTAT.size)
        abi.PRESTAT.pack_into(mem.view, out, abi.PREOPENTYPE_DIR, len(entry.preopen))
        return abi.SUCCESS

    def fd_prestat_dir_name(self, fd: int, path: int, path_len: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.preopen is None:
            raise WasiError(abi.EBADF)
        if path_len < len(entry.preopen):
            raise WasiError(abi.ENAMETOOLONG)
        self.ctx.mem.write_bytes(path, entry.preopen)
        return abi.SUCCESS

    def fd_readdir(self, fd: int, buf: int, buf_len: int, cookie: int, bufused: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.kind not in (KIND_FILE, KIND_MEMDIR) or not entry.is_dir:
            raise WasiError(abi.EBADF)  # as wasmtime: not a directory fd
        entry.require(abi.RIGHT_FD_READDIR)
        if cookie == 0 or entry.dirents is None:
            entry.dirents = (
                memfs.dirents(entry) if entry.kind == KIND_MEMDIR else _list_dir(entry.hostfd)
            )
        mem = self.ctx.mem
        mem.check(buf, buf_len)
        out = bytearray()
        for index in range(cookie, len(entry.dirents)):
            name, ino, dtype = entry.dirents[index]
            out += abi.DIRENT.pack(index + 1, ino, len(name), dtype)
            out += name
            if len(out) >= buf_len:
                break
        data = bytes(out[:buf_len])
        mem.write_bytes(buf, data)
        mem.set_u32(bufused, len(data))
        return abi.SUCCESS


def _list_dir(hostfd: int) -> list[tuple[bytes, int, int]]:
    """A snapshot of the directory, with ``.`` and ``..`` first (as wasmtime lists them)."""
    own = os.fstat(hostfd)
    entries: list[tuple[bytes, int, int]] = [
        (b".", own.st_ino & _U64_MAX, abi.FILETYPE_DIRECTORY),
        (b"..", 0, abi.FILETYPE_DIRECTORY),
    ]
    with os.scandir(hostfd) as listing:
        for item in listing:
            try:
                if item.is_symlink():
                    dtype = abi.FILETYPE_SYMBOLIC_LINK
                elif item.is_dir(follow_symlinks=False):
                    dtype = abi.FILETYPE_DIRECTORY
                elif item.is_file(follow_symlinks=False):
                    dtype = abi.FILETYPE_REGULAR_FILE
                else:
                    dtype = filetype_of_mode(
                        os.stat(item.name, dir_fd=hostfd, follow_symlinks=False).st_mode
                    )
            except OSError:
                dtype = abi.FILETYPE_UNKNOWN
            entries.append((os.fsencode(item.name), item.inode() & _U64_MAX, dtype))
    return entries
