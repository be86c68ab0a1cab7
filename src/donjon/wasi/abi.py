"""Numbers and struct layouts of ``wasi_snapshot_preview1``, from its witx spec.

Kept in one place so every other module speaks in names, never in magic numbers.
"""

from __future__ import annotations

import errno as _host_errno
import struct

# --- errno (witx ``errno``, u16) -------------------------------------------------------------
SUCCESS = 0
E2BIG = 1
EACCES = 2
EADDRINUSE = 3
EADDRNOTAVAIL = 4
EAFNOSUPPORT = 5
EAGAIN = 6
EALREADY = 7
EBADF = 8
EBADMSG = 9
EBUSY = 10
ECANCELED = 11
ECHILD = 12
ECONNABORTED = 13
ECONNREFUSED = 14
ECONNRESET = 15
EDEADLK = 16
EDESTADDRREQ = 17
EDOM = 18
EDQUOT = 19
EEXIST = 20
EFAULT = 21
EFBIG = 22
EHOSTUNREACH = 23
EIDRM = 24
EILSEQ = 25
EINPROGRESS = 26
EINTR = 27
EINVAL = 28
EIO = 29
EISCONN = 30
EISDIR = 31
ELOOP = 32
EMFILE = 33
EMLINK = 34
EMSGSIZE = 35
EMULTIHOP = 36
ENAMETOOLONG = 37
ENETDOWN = 38
ENETRESET = 39
ENETUNREACH = 40
ENFILE = 41
ENOBUFS = 42
ENODEV = 43
ENOENT = 44
ENOEXEC = 45
ENOLCK = 46
ENOLINK = 47
ENOMEM = 48
ENOMSG = 49
ENOPROTOOPT = 50
ENOSPC = 51
ENOSYS = 52
ENOTCONN = 53
ENOTDIR = 54
ENOTEMPTY = 55
ENOTRECOVERABLE = 56
ENOTSOCK = 57
ENOTSUP = 58
ENOTTY = 59
ENXIO = 60
EOVERFLOW = 61
EOWNERDEAD = 62
EPERM = 63
EPIPE = 64
EPROTO = 65
EPROTONOSUPPORT = 66
EPROTOTYPE = 67
ERANGE = 68
EROFS = 69
ESPIPE = 70
ESRCH = 71
ESTALE = 72
ETIMEDOUT = 73
ETXTBSY = 74
EXDEV = 75
ENOTCAPABLE = 76

_WASI_BY_NAME = {name: value for name, value in globals().items() if name.startswith("E")}


def _host_table() -> dict[int, int]:
    """Host errno -> WASI errno, by symbolic name, so it is right on Linux and macOS alike."""
    table: dict[int, int] = {}
    for name, wasi in _WASI_BY_NAME.items():
        host = getattr(_host_errno, name, None)
        if isinstance(host, int):
            table.setdefault(host, wasi)
    for alias, wasi in (("EWOULDBLOCK", EAGAIN), ("EOPNOTSUPP", ENOTSUP)):
        host = getattr(_host_errno, alias, None)
        if isinstance(host, int):
            table.setdefault(host, wasi)
    return table


_FROM_HOST = _host_table()


def from_oserror(exc: OSError) -> int:
    """The WASI errno for a host ``OSError`` (EIO when the host code has no WASI twin)."""
    return _FROM_HOST.get(exc.errno or 0, EIO)


# --- rights (u64 flags) -------------------------------------------------------------------
RIGHT_FD_DATASYNC = 1 << 0
RIGHT_FD_READ = 1 << 1
RIGHT_FD_SEEK = 1 << 2
RIGHT_FD_FDSTAT_SET_FLAGS = 1 << 3
RIGHT_FD_SYNC = 1 << 4
RIGHT_FD_TELL = 1 << 5
RIGHT_FD_WRITE = 1 << 6
RIGHT_FD_ADVISE = 1 << 7
RIGHT_FD_ALLOCATE = 1 << 8
RIGHT_PATH_CREATE_DIRECTORY = 1 << 9
RIGHT_PATH_CREATE_FILE = 1 << 10
RIGHT_PATH_LINK_SOURCE = 1 << 11
RIGHT_PATH_LINK_TARGET = 1 << 12
RIGHT_PATH_OPEN = 1 << 13
RIGHT_FD_READDIR = 1 << 14
RIGHT_PATH_READLINK = 1 << 15
RIGHT_PATH_RENAME_SOURCE = 1 << 16
RIGHT_PATH_RENAME_TARGET = 1 << 17
RIGHT_PATH_FILESTAT_GET = 1 << 18
RIGHT_PATH_FILESTAT_SET_SIZE = 1 << 19
RIGHT_PATH_FILESTAT_SET_TIMES = 1 << 20
RIGHT_FD_FILESTAT_GET = 1 << 21
RIGHT_FD_FILESTAT_SET_SIZE = 1 << 22
RIGHT_FD_FILESTAT_SET_TIMES = 1 << 23
RIGHT_PATH_SYMLINK = 1 << 24
RIGHT_PATH_REMOVE_DIRECTORY = 1 << 25
RIGHT_PATH_UNLINK_FILE = 1 << 26
RIGHT_POLL_FD_READWRITE = 1 << 27
RIGHT_SOCK_SHUTDOWN = 1 << 28
RIGHT_SOCK_ACCEPT = 1 << 29
RIGHTS_ALL = (1 << 30) - 1

#: Rights that change the file system; a read-only preopen never carries them.
RIGHTS_WRITING = (
    RIGHT_FD_DATASYNC
    | RIGHT_FD_WRITE
    | RIGHT_FD_ALLOCATE
    | RIGHT_PATH_CREATE_DIRECTORY
    | RIGHT_PATH_CREATE_FILE
    | RIGHT_PATH_LINK_SOURCE
    | RIGHT_PATH_LINK_TARGET
    | RIGHT_PATH_RENAME_SOURCE
    | RIGHT_PATH_RENAME_TARGET
    | RIGHT_PATH_FILESTAT_SET_SIZE
    | RIGHT_PATH_FILESTAT_SET_TIMES
    | RIGHT_FD_FILESTAT_SET_SIZE
    | RIGHT_FD_FILESTAT_SET_TIMES
    | RIGHT_PATH_SYMLINK
    | RIGHT_PATH_REMOVE_DIRECTORY
    | RIGHT_PATH_UNLINK_FILE
)

RIGHTS_REGULAR_FILE = (
    RIGHT_FD_DATASYNC
    | RIGHT_FD_READ
    | RIGHT_FD_SEEK
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_SYNC
    | RIGHT_FD_TELL
    | RIGHT_FD_WRITE
    | RIGHT_FD_ADVISE
    | RIGHT_FD_ALLOCATE
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_FD_FILESTAT_SET_SIZE
    | RIGHT_FD_FILESTAT_SET_TIMES
    | RIGHT_POLL_FD_READWRITE
)

RIGHTS_DIRECTORY = (
    RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_SYNC
    | RIGHT_FD_ADVISE
    | RIGHT_PATH_CREATE_DIRECTORY
    | RIGHT_PATH_CREATE_FILE
    | RIGHT_PATH_LINK_SOURCE
    | RIGHT_PATH_LINK_TARGET
    | RIGHT_PATH_OPEN
    | RIGHT_FD_READDIR
    | RIGHT_PATH_READLINK
    | RIGHT_PATH_RENAME_SOURCE
    | RIGHT_PATH_RENAME_TARGET
    | RIGHT_PATH_FILESTAT_GET
    | RIGHT_PATH_FILESTAT_SET_SIZE
    | RIGHT_PATH_FILESTAT_SET_TIMES
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_FD_FILESTAT_SET_TIMES
    | RIGHT_PATH_SYMLINK
    | RIGHT_PATH_REMOVE_DIRECTORY
    | RIGHT_PATH_UNLINK_FILE
    | RIGHT_POLL_FD_READWRITE
)

RIGHTS_TTY = (
    RIGHT_FD_READ
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_WRITE
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_POLL_FD_READWRITE
)

RIGHTS_SOCKET = (
    RIGHT_FD_READ
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_WRITE
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_POLL_FD_READWRITE
    | RIGHT_SOCK_SHUTDOWN
)

RIGHTS_LISTENER = (
    RIGHT_FD_READ
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_POLL_FD_READWRITE
    | RIGHT_SOCK_ACCEPT
)

# --- filetype (u8) ------------------------------------------------------------------------
FILETYPE_UNKNOWN = 0
FILETYPE_BLOCK_DEVICE = 1
FILETYPE_CHARACTER_DEVICE = 2
FILETYPE_DIRECTORY = 3
FILETYPE_REGULAR_FILE = 4
FILETYPE_SOCKET_DGRAM = 5
FILETYPE_SOCKET_STREAM = 6
FILETYPE_SYMBOLIC_LINK = 7

# --- flags ----------------------------------------------------------------------------------
FDFLAGS_APPEND = 1
FDFLAGS_DSYNC = 2
FDFLAGS_NONBLOCK = 4
FDFLAGS_RSYNC = 8
FDFLAGS_SYNC = 16
#: the durability flags: fixed at path_open (the host fd carries them), reported by fd_fdstat_get
FDFLAGS_SYNCS = FDFLAGS_DSYNC | FDFLAGS_RSYNC | FDFLAGS_SYNC
FDFLAGS_ALL = 31

OFLAGS_CREAT = 1
OFLAGS_DIRECTORY = 2
OFLAGS_EXCL = 4
OFLAGS_TRUNC = 8

LOOKUPFLAGS_SYMLINK_FOLLOW = 1

FSTFLAGS_ATIM = 1
FSTFLAGS_ATIM_NOW = 2
FSTFLAGS_MTIM = 4
FSTFLAGS_MTIM_NOW = 8

WHENCE_SET = 0
WHENCE_CUR = 1
WHENCE_END = 2

ADVICE_MAX = 5

CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_PROCESS_CPUTIME_ID = 2
CLOCK_THREAD_CPUTIME_ID = 3

EVENTTYPE_CLOCK = 0
EVENTTYPE_FD_READ = 1
EVENTTYPE_FD_WRITE = 2
SUBCLOCKFLAGS_ABSTIME = 1
EVENTRWFLAGS_FD_READWRITE_HANGUP = 1

RIFLAGS_RECV_PEEK = 1
RIFLAGS_RECV_WAITALL = 2
ROFLAGS_RECV_DATA_TRUNCATED = 1
SDFLAGS_RD = 1
SDFLAGS_WR = 2

PREOPENTYPE_DIR = 0

# --- struct layouts (little endian, natural alignment) -------------------------------------
IOVEC = struct.Struct("<II")  # buf, buf_len
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
U32PAIR = struct.Struct("<II")
#: fdstat: filetype u8, pad, flags u16, pad u32, rights_base u64, rights_inheriting u64
FDSTAT = struct.Struct("<BxHxxxxQQ")
#: filestat: dev, ino, filetype u8 (+7 pad), nlink, size, atim, mtim, ctim
FILESTAT = struct.Struct("<QQB7xQQQQQ")
#: dirent header: d_next, d_ino, d_namlen u32, d_type u8 (+3 pad)
DIRENT = struct.Struct("<QQIB3x")
#: prestat: tag u8 (+3 pad), pr_name_len u32
PRESTAT = struct.Struct("<B3xI")
#: subscription: userdata, tag u8 (+7 pad), then a 32-byte union
SUBSCRIPTION = struct.Struct("<QB7x32s")
SUBSCRIPTION_CLOCK = struct.Struct("<I4xQQH6x")  # id, timeout, precision, flags
SUBSCRIPTION_FD = struct.Struct("<I28x")  # file_descriptor
#: event: userdata, error u16, type u8 (+5 pad), nbytes u64, flags u16 (+6 pad)
EVENT = struct.Struct("<QHB5xQH6x")

assert FDSTAT.size == 24 and FILESTAT.size == 64 and DIRENT.size == 24
assert PRESTAT.size == 8 and SUBSCRIPTION.size == 48 and EVENT.size == 32
