"""The WASI host: every ``wasi_snapshot_preview1`` import, wired into a linker.

:class:`WasiHost` builds the fd table from a :class:`RunSpec` and defines each
import through :mod:`donjon.wasi.fastcall`. Each host function returns a WASI
errno; :func:`_guard` turns a :class:`WasiError` or a host ``OSError`` raised
inside it into that errno, so the functions themselves read straight.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from donjon.wasi import abi
from donjon.wasi.context import HostContext
from donjon.wasi.core import CoreCalls
from donjon.wasi.errors import WasiError
from donjon.wasi.fastcall import FastLinker
from donjon.wasi.fdops import FdCalls
from donjon.wasi.pathops import PathCalls
from donjon.wasi.poll import PollCalls
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
    @wraps(func)
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

    return guarded


class WasiHost:
    """All host functions of one run, sharing one :class:`HostContext`."""

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx
        self.sockets = SocketCalls(ctx)
        self.groups: list[Any] = [
            CoreCalls(ctx),
            FdCalls(ctx, self.sockets),
            PathCalls(ctx),
            PollCalls(ctx),
            self.sockets,
        ]

    def function(self, name: str) -> Callable[..., Any]:
        for group in self.groups:
            func = getattr(group, name, None)
            if func is not None:
                return func  # type: ignore[no-any-return]
        raise LookupError(f"no host function for {MODULE}::{name}")

    def define(self, linker: FastLinker) -> None:
        for name, (params, result) in SIGNATURES.items():
            func = self.function(name)
            if name not in _UNGUARDED:
                func = _guard(func)
            linker.define(MODULE, name, params, result, func)
