"""The WASI host: every ``wasi_snapshot_preview1`` import, wired into a linker.

:class:`WasiHost` builds the fd table from a :class:`RunSpec` and defines each
import through :mod:`donjon.wasi.fastcall`. Each host function returns a WASI
errno; :func:`_guard` turns a :class:`WasiError` or a host ``OSError`` raised
inside it into that errno, so the functions themselves read straight.
"""

from __future__ import annotations

from donjon.wasi import abi
from donjon.wasi.context import HostContext
from donjon.wasi.errors import WasiError
from donjon.wasi.fastcall import FastLinker

#: ``typing`` and ``collections`` cost milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from donjon.wasi.sockets import SocketCalls

MODULE = "wasi_snapshot_preview1"

#: import name -> (params: ``i`` i32 / ``I`` i64, has an i32 result)
SIGNATURES: dict[str, tuple[str, bool]] = {
    "args_get": ("ii", True),
    "args_sizes_get": ("ii", True),
    "environ_get": ("ii", True),
    "environ_sizes_get": ("ii", True),
    "clock_res_get": ("ii", True),
    "clock_time_get": ("iIi", True),
    "fd_advise": ("iIIi", True),
    "fd_allocate": ("iII", True),
    "fd_close": ("i", True),
    "fd_datasync": ("i", True),
    "fd_fdstat_get": ("ii", True),
    "fd_fdstat_set_flags": ("ii", True),
    "fd_fdstat_set_rights": ("iII", True),
    "fd_filestat_get": ("ii", True),
    "fd_filestat_set_size": ("iI", True),
    "fd_filestat_set_times": ("iIIi", True),
    "fd_pread": ("iiiIi", True),
    "fd_prestat_get": ("ii", True),
    "fd_prestat_dir_name": ("iii", True),
    "fd_pwrite": ("iiiIi", True),
    "fd_read": ("iiii", True),
    "fd_readdir": ("iiiIi", True),
    "fd_renumber": ("ii", True),
    "fd_seek": ("iIii", True),
    "fd_sync": ("i", True),
    "fd_tell": ("ii", True),
    "fd_write": ("iiii", True),
    "path_create_directory": ("iii", True),
    "path_filestat_get": ("iiiii", True),
    "path_filestat_set_times": ("iiiiIIi", True),
    "path_link": ("iiiiiii", True),
    "path_open": ("iiiiiIIii", True),
    "path_readlink": ("iiiiii", True),
    "path_remove_directory": ("iii", True),
    "path_rename": ("iiiiii", True),
    "path_symlink": ("iiiii", True),
    "path_unlink_file": ("iii", True),
    "poll_oneoff": ("iiii", True),
    "proc_exit": ("i", False),
    "proc_raise": ("i", True),
    "sched_yield": ("", True),
    "random_get": ("ii", True),
    "sock_accept": ("iii", True),
    "sock_recv": ("iiiiii", True),
    "sock_send": ("iiiii", True),
    "sock_shutdown": ("ii", True),
}

#: These already turn every failure into an errno themselves (the hot path).
_UNGUARDED = frozenset({"fd_write", "fd_read", "proc_exit"})


def _guard(func: Callable[..., int]) -> Callable[..., int]:
    def guarded(*args: int) -> int:
        try:
            return func(*args)
        except WasiError as exc:
            return exc.errno
        except OSError as exc:
            return abi.from_oserror(exc)
        except (ValueError, OverflowError):
            # Embedded NUL in a path, an offset beyond what the host can express.
            return abi.EINVAL

    guarded.__name__ = guarded.__qualname__ = getattr(func, "__name__", "guarded")
    guarded.__doc__ = func.__doc__
    guarded.__wrapped__ = func  # type: ignore[attr-defined]
    return guarded


def group_of(name: str) -> str:
    """Which group of host functions implements ``name``: core, fd, path, poll or sockets."""
    for prefix, group in (
        ("fd_", "fd"),
        ("path_", "path"),
        ("poll_", "poll"),
        ("sock_", "sockets"),
    ):
        if name.startswith(prefix):
            return group
    return "core"


class WasiHost:
    """All host functions of one run, sharing one :class:`HostContext`.

    Each group (a module of host functions) is imported and built the first
    time one of its functions is asked for: a run defines only what its module
    imports, and a hello world needs neither paths, nor poll, nor sockets.
    """

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx
        self._groups: dict[str, Any] = {}

    def group(self, group: str) -> Any:
        built = self._groups.get(group)
        if built is None:
            built = self._groups[group] = self._build(group)
        return built

    def _build(self, group: str) -> Any:
        ctx = self.ctx
        if group == "core":
            from donjon.wasi.core import CoreCalls

            return CoreCalls(ctx)
        if group == "fd":
            from donjon.wasi.fdops import FdCalls

            return FdCalls(ctx, self.sockets)
        if group == "path":
            from donjon.wasi.pathops import PathCalls

            return PathCalls(ctx)
        if group == "poll":
            from donjon.wasi.poll import PollCalls

            return PollCalls(ctx)
        if group == "sockets":
            # ``socket`` and ``ssl`` take milliseconds to import, and a run that was
            # given no sockets can never get one (preview 1 has no ``sock_open``).
            from donjon.wasi.sockets import SocketCalls

            return SocketCalls(ctx)
        raise LookupError(f"no group of host functions called {group!r}")

    def sockets(self) -> SocketCalls:
        """The ``sock_*`` calls (also used by fd_read/fd_write on socket fds)."""
        sockets: SocketCalls = self.group("sockets")
        return sockets

    def function(self, name: str) -> Callable[..., Any]:
        if name not in SIGNATURES:
            raise LookupError(f"no host function for {MODULE}::{name}")
        group = group_of(name)
        if group == "sockets" and "sockets" not in self._groups and not self.ctx.fds.has_sockets():
            # No sockets in the table: these only answer errors (EBADF, ENOTSOCK),
            # which the real calls give, loaded the first time the guest asks.
            def deferred(*args: int) -> int:
                call: Callable[..., int] = getattr(self.sockets(), name)
                return call(*args)

            return deferred
        func: Callable[..., Any] = getattr(self.group(group), name)
        return func

    def define(self, linker: FastLinker, names: Iterable[str] | None = None) -> None:
        """Define ``names`` (every WASI import by default) in ``linker``.

        A run defines only what its module imports: each definition builds a
        ctypes callback, and a small command imports five or six of the 46.
        """
        for name in SIGNATURES if names is None else names:
            params, result = SIGNATURES[name]
            func = self.function(name)
            if name not in _UNGUARDED:
                func = _guard(func)
            linker.define(MODULE, name, params, result, func)
