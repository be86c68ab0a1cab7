"""``path_*`` calls. Every path goes through :func:`donjon.wasi.sandbox.resolve`.

Operations act on ``(dir fd, last name)`` pairs with ``dir_fd=`` and
``follow_symlinks=False``: the host never resolves a guest path itself. A
trailing slash is passed on to the host (``name/``) so that POSIX's "must be a
directory" rule applies exactly as it does natively.
"""

from __future__ import annotations

import errno
import os
import stat

from donjon.wasi import abi, memfs
from donjon.wasi.context import HostContext
from donjon.wasi.errors import WasiError
from donjon.wasi.fdops import filestat_tuple, resolve_times
from donjon.wasi.fdtable import KIND_FILE, KIND_MEMDIR, FdEntry, filetype_of_mode
from donjon.wasi.sandbox import ESCAPE, Resolved, decode_path, resolve

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: wasmtime opens for writing only when FD_WRITE is asked for (a directory refuses it)
_WANTS_WRITE = abi.RIGHT_FD_WRITE
_WANTS_READ = abi.RIGHT_FD_READ | abi.RIGHT_FD_READDIR


def _host_name(resolved: Resolved) -> str:
    return resolved.name + "/" if resolved.must_be_dir and resolved.name != "." else resolved.name


class PathCalls:
    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    def _dir(self, fd: int, rights: int) -> FdEntry:
        entry = self.ctx.fds.get(fd)
        if entry.kind == KIND_MEMDIR:
            entry.require(rights)  # an in-memory directory lacks every writing right
            raise WasiError(abi.ENOTSUP)
        if entry.kind != KIND_FILE or not entry.is_dir:
            raise WasiError(abi.ENOTDIR)
        entry.require(rights)
        return entry

    def _path(self, ptr: int, length: int) -> str:
        return decode_path(self.ctx.mem.read_bytes(ptr, length))

    def _resolve(self, fd: int, rights: int, ptr: int, length: int, follow: bool) -> Resolved:
        entry = self._dir(fd, rights)
        return resolve(entry.hostfd, self._path(ptr, length), follow=follow)

    # --- open ---------------------------------------------------------------------------

    def path_open(
        self,
        fd: int,
        dirflags: int,
        path: int,
        path_len: int,
        oflags: int,
        rights_base: int,
        rights_inheriting: int,
        fdflags: int,
        opened: int,
    ) -> int:
        memory = self.ctx.fds.get(fd)
        if memory.kind == KIND_MEMDIR:
            if oflags & ~0xF or fdflags & ~abi.FDFLAGS_ALL or dirflags & ~1:
                raise WasiError(abi.EINVAL)
            text = self._path(path, path_len)
            opened_fd = self.ctx.fds.add(
                memfs.open_path(memory, text, oflags, rights_base, fdflags)
            )
            self.ctx.mem.set_u32(opened, opened_fd)
            return abi.SUCCESS
        parent = self._dir(fd, abi.RIGHT_PATH_OPEN)
        if oflags & ~0xF or fdflags & ~abi.FDFLAGS_ALL or dirflags & ~1:
            raise WasiError(abi.EINVAL)
        if (rights_base | rights_inheriting) & ~abi.RIGHTS_ALL:
            raise WasiError(abi.EINVAL)
        creat = bool(oflags & abi.OFLAGS_CREAT)
        if creat:
            parent.require(abi.RIGHT_PATH_CREATE_FILE)
        if oflags & abi.OFLAGS_TRUNC:
            parent.require(abi.RIGHT_PATH_FILESTAT_SET_SIZE)
        want_write = bool(rights_base & _WANTS_WRITE) or bool(fdflags & abi.FDFLAGS_APPEND)
        want_read = bool(rights_base & _WANTS_READ) or not want_write
        if parent.readonly and (want_write or creat or oflags & abi.OFLAGS_TRUNC):
            raise WasiError(abi.ENOTCAPABLE)
        directory = bool(oflags & abi.OFLAGS_DIRECTORY)
        flags = _CLOEXEC | os.O_NOFOLLOW
        if want_write:
            flags |= os.O_RDWR if want_read else os.O_WRONLY
        else:
            flags |= os.O_RDONLY
        if creat:
            flags |= os.O_CREAT
        if oflags & abi.OFLAGS_EXCL:
            flags |= os.O_EXCL
        if oflags & abi.OFLAGS_TRUNC:
            flags |= os.O_TRUNC
        if directory:
            flags |= _O_DIRECTORY
        if fdflags & abi.FDFLAGS_APPEND:
            flags |= os.O_APPEND
        for wasi_flag, name in (
            (abi.FDFLAGS_DSYNC, "O_DSYNC"),
            (abi.FDFLAGS_SYNC, "O_SYNC"),
            (abi.FDFLAGS_RSYNC, "O_RSYNC"),
        ):
            if fdflags & wasi_flag:
                host_flag = getattr(os, name, getattr(os, "O_SYNC", None))
                if host_flag is None:
                    raise WasiError(abi.ENOTSUP)
                flags |= host_flag
        text = self._path(path, path_len)
        follow = bool(dirflags & abi.LOOKUPFLAGS_SYMLINK_FOLLOW)
        if creat and oflags & abi.OFLAGS_EXCL:
            follow = False  # O_EXCL never follows a final symlink: it exists, EEXIST
        with resolve(parent.hostfd, text, follow=follow) as where:
            if where.must_be_dir:
                if creat:
                    raise WasiError(abi.EISDIR)
                flags |= _O_DIRECTORY
            hostfd = os.open(where.name, flags, 0o666, dir_fd=where.dirfd)
        try:
            st = os.fstat(hostfd)
            filetype = filetype_of_mode(st.st_mode)
            if directory and filetype != abi.FILETYPE_DIRECTORY:
                raise WasiError(abi.ENOTDIR)
            if filetype == abi.FILETYPE_DIRECTORY:
                base = abi.RIGHTS_DIRECTORY
                inheriting = abi.RIGHTS_DIRECTORY | abi.RIGHTS_REGULAR_FILE
            else:
                base = abi.RIGHTS_REGULAR_FILE
                inheriting = 0
                if not want_write:
                    base &= ~(_WANTS_WRITE | abi.RIGHT_FD_ALLOCATE | abi.RIGHT_FD_FILESTAT_SET_SIZE)
                if not want_read:
                    base &= ~abi.RIGHT_FD_READ
            # As wasmtime, the rights asked for only choose the open mode (read, write);
            # what an fd gets is its type's rights, never more than its directory passes on.
            base &= parent.rights_inheriting
            inheriting &= parent.rights_inheriting
            if parent.readonly:
                base &= ~abi.RIGHTS_WRITING
                inheriting &= ~abi.RIGHTS_WRITING
            entry = FdEntry(
                KIND_FILE,
                filetype,
                hostfd,
                base,
                inheriting,
                # the sync flags were applied to the host fd above: fdstat must say so
                flags=fdflags & (abi.FDFLAGS_APPEND | abi.FDFLAGS_NONBLOCK | abi.FDFLAGS_SYNCS),
                readonly=parent.readonly,
            )
            new_fd = self.ctx.fds.add(entry)
        except BaseException:
            os.close(hostfd)
            raise
        try:
            self.ctx.mem.set_u32(opened, new_fd)
        except WasiError:
            self.ctx.fds.close(new_fd)
            raise
        return abi.SUCCESS

    # --- directories --------------------------------------------------------------------

    def path_create_directory(self, fd: int, path: int, path_len: int) -> int:
        with self._resolve(fd, abi.RIGHT_PATH_CREATE_DIRECTORY, path, path_len, False) as where:
            if where.name == ".":
                raise WasiError(abi.EEXIST)
            os.mkdir(where.name, 0o777, dir_fd=where.dirfd)
        return abi.SUCCESS

    def path_remove_directory(self, fd: int, path: int, path_len: int) -> int:
        with self._resolve(fd, abi.RIGHT_PATH_REMOVE_DIRECTORY, path, path_len, False) as where:
            if where.name == ".":
                raise WasiError(abi.EINVAL)
            try:
                os.rmdir(where.name, dir_fd=where.dirfd)
            except OSError as exc:
                if exc.errno == errno.EEXIST:  # some hosts say EEXIST for "not empty"
                    raise WasiError(abi.ENOTEMPTY) from exc
                raise
        return abi.SUCCESS

    def path_unlink_file(self, fd: int, path: int, path_len: int) -> int:
        with self._resolve(fd, abi.RIGHT_PATH_UNLINK_FILE, path, path_len, False) as where:
            if where.name == ".":
                raise WasiError(abi.EISDIR)
            try:
                os.unlink(_host_name(where), dir_fd=where.dirfd)
            except PermissionError as exc:
                # macOS says EPERM for unlink(directory); Linux (and wasmtime) say EISDIR.
                if _is_dir(where):
                    raise WasiError(abi.EISDIR) from exc
                raise
        return abi.SUCCESS

    # --- metadata -----------------------------------------------------------------------

    def path_filestat_get(self, fd: int, flags: int, path: int, path_len: int, buf: int) -> int:
        follow = bool(flags & abi.LOOKUPFLAGS_SYMLINK_FOLLOW)
        memory = self.ctx.fds.get(fd)
        if memory.kind == KIND_MEMDIR:
            values = memfs.path_filestat(memory, self._path(path, path_len))
        else:
            with self._resolve(fd, abi.RIGHT_PATH_FILESTAT_GET, path, path_len, follow) as where:
                st = os.stat(_host_name(where), dir_fd=where.dirfd, follow_symlinks=False)
            values = filestat_tuple(st)
        mem = self.ctx.mem
        mem.check(buf, abi.FILESTAT.size)
        abi.FILESTAT.pack_into(mem.view, buf, *values)
        return abi.SUCCESS

    def path_filestat_set_times(
        self, fd: int, flags: int, path: int, path_len: int, atim: int, mtim: int, fstflags: int
    ) -> int:
        follow = bool(flags & abi.LOOKUPFLAGS_SYMLINK_FOLLOW)
        resolve_times(atim, mtim, fstflags, None)  # validate before touching anything
        right = abi.RIGHT_PATH_FILESTAT_SET_TIMES
        with self._resolve(fd, right, path, path_len, follow) as where:
            name = _host_name(where)
            st = os.stat(name, dir_fd=where.dirfd, follow_symlinks=False)
            times = resolve_times(atim, mtim, fstflags, (st.st_atime_ns, st.st_mtime_ns))
            if times is not None:
                if os.utime not in os.supports_follow_symlinks and stat.S_ISLNK(st.st_mode):
                    # This host cannot set a link's own times; following it could leave
                    # the sandbox, so refuse.
                    raise WasiError(abi.ENOTSUP)
                nofollow = os.utime in os.supports_follow_symlinks
                os.utime(name, ns=times, dir_fd=where.dirfd, follow_symlinks=not nofollow)
        return abi.SUCCESS

    # --- links --------------------------------------------------------------------------

    def path_link(
        self,
        old_fd: int,
        old_flags: int,
        old_path: int,
        old_len: int,
        new_fd: int,
        new_path: int,
        new_len: int,
    ) -> int:
        follow = bool(old_flags & abi.LOOKUPFLAGS_SYMLINK_FOLLOW)
        src = self._resolve(old_fd, abi.RIGHT_PATH_LINK_SOURCE, old_path, old_len, follow)
        with src:
            dst = self._resolve(new_fd, abi.RIGHT_PATH_LINK_TARGET, new_path, new_len, False)
            with dst:
                os.link(
                    _host_name(src),
                    _host_name(dst),
                    src_dir_fd=src.dirfd,
                    dst_dir_fd=dst.dirfd,
                    follow_symlinks=False,
                )
        return abi.SUCCESS

    def path_symlink(
        self, old_path: int, old_len: int, fd: int, new_path: int, new_len: int
    ) -> int:
        target = self._path(old_path, old_len)
        if target.startswith("/"):
            raise WasiError(ESCAPE)  # as wasmtime: an absolute link could only point out
        with self._resolve(fd, abi.RIGHT_PATH_SYMLINK, new_path, new_len, False) as where:
            if where.name == ".":
                raise WasiError(abi.EEXIST)
            if where.must_be_dir:  # "name/": never creates; says what is there, as Linux
                raise WasiError(_trailing_slash_errno(where))
            os.symlink(target, where.name, dir_fd=where.dirfd)
        return abi.SUCCESS

    def path_readlink(
        self, fd: int, path: int, path_len: int, buf: int, buf_len: int, bufused: int
    ) -> int:
        with self._resolve(fd, abi.RIGHT_PATH_READLINK, path, path_len, False) as where:
            target = os.readlink(_host_name(where), dir_fd=where.dirfd)
        data = os.fsencode(target)[:buf_len]
        mem = self.ctx.mem
        mem.write_bytes(buf, data)
        mem.set_u32(bufused, len(data))
        return abi.SUCCESS

    def path_rename(
        self, fd: int, old_path: int, old_len: int, new_fd: int, new_path: int, new_len: int
    ) -> int:
        src = self._resolve(fd, abi.RIGHT_PATH_RENAME_SOURCE, old_path, old_len, False)
        with src:
            dst = self._resolve(new_fd, abi.RIGHT_PATH_RENAME_TARGET, new_path, new_len, False)
            with dst:
                if src.name == "." or dst.name == ".":
                    raise WasiError(abi.EBUSY)
                if dst.must_be_dir and not src.must_be_dir and not _is_dir(src):
                    raise WasiError(abi.ENOTDIR)
                os.rename(
                    _host_name(src),
                    _host_name(dst),
                    src_dir_fd=src.dirfd,
                    dst_dir_fd=dst.dirfd,
                )
        return abi.SUCCESS


def _is_dir(where: Resolved) -> bool:
    try:
        st = os.stat(where.name, dir_fd=where.dirfd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode)


def _trailing_slash_errno(where: Resolved) -> int:
    """Why ``name/`` cannot be created: ENOENT, EEXIST (a directory), ENOTDIR (anything
    else). The resolver already expanded a final link inside the sandbox; lstat keeps
    it that way if one appeared since (EEXIST, not followed)."""
    try:
        st = os.stat(where.name, dir_fd=where.dirfd, follow_symlinks=False)
    except OSError:
        return abi.ENOENT
    if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return abi.EEXIST
    return abi.ENOTDIR
