"""Drive the WASI host's functions directly, for fast unit tests.

``HostHarness`` drives the host functions directly, with guest memory backed by
a ctypes buffer: no compile, no wasm, so sandbox and rights cases stay fast.
End-to-end cases build small WAT/C programs with the ``build_wasm`` fixture.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from donjon.wasi.api import Preopen, Stdio, StdioKind
from donjon.wasi.context import HostContext
from donjon.wasi.fdtable import FdTable
from donjon.wasi.host import WasiHost, _guard
from donjon.wasi.memory import GuestMemory

PROGRAMS = Path(__file__).resolve().parent / "programs"

#: scratch addresses in the fake guest memory
PATH_AT = 0x1000
PATH2_AT = 0x2000
OUT_AT = 0x3000
IOV_AT = 0x4000
DATA_AT = 0x5000


class HostHarness:
    def __init__(self, preopens: list[Preopen], streams: list[Any]) -> None:
        self.buffer = (ctypes.c_ubyte * (1 << 16))()
        base = ctypes.addressof(self.buffer)
        null = Stdio(StdioKind.NULL)
        fds = FdTable.build((null, null, null), preopens, streams)
        self.ctx = HostContext(args=[b"prog"], env=[], fds=fds)
        self.ctx.memory = GuestMemory(lambda: base, lambda: len(self.buffer))
        self.host = WasiHost(self.ctx)

    def call(self, name: str, *args: int) -> int:
        func: Callable[..., int] = self.host.function(name)
        return _guard(func)(*args)

    def put(self, at: int, data: bytes) -> int:
        ctypes.memmove(ctypes.addressof(self.buffer) + at, data, len(data))
        return len(data)

    def get(self, at: int, n: int) -> bytes:
        return bytes(self.buffer[at : at + n])

    def u32(self, at: int) -> int:
        value: int = struct.unpack_from("<I", self.buffer, at)[0]
        return value

    def path(self, text: str, at: int = PATH_AT) -> tuple[int, int]:
        return at, self.put(at, text.encode())

    def open(
        self,
        dirfd: int,
        path: str,
        *,
        oflags: int = 0,
        rights: int = (1 << 30) - 1,
        follow: bool = True,
        fdflags: int = 0,
    ) -> tuple[int, int]:
        """path_open; returns (errno, new fd)."""
        ptr, n = self.path(path)
        err = self.call(
            "path_open", dirfd, int(follow), ptr, n, oflags, rights, rights, fdflags, OUT_AT
        )
        return err, self.u32(OUT_AT) if err == 0 else -1

    def write(self, fd: int, data: bytes) -> tuple[int, int]:
        self.put(DATA_AT, data)
        self.put(IOV_AT, struct.pack("<II", DATA_AT, len(data)))
        err = self.call("fd_write", fd, IOV_AT, 1, OUT_AT)
        return err, self.u32(OUT_AT)

    def read(self, fd: int, n: int) -> tuple[int, bytes]:
        self.put(IOV_AT, struct.pack("<II", DATA_AT, n))
        err = self.call("fd_read", fd, IOV_AT, 1, OUT_AT)
        return err, self.get(DATA_AT, self.u32(OUT_AT)) if err == 0 else b""

    def close(self) -> None:
        self.ctx.fds.close_all()


SECRET = b"outside secret\n"
