"""args, environ, clocks, random, proc_exit/proc_raise and sched_yield."""

from __future__ import annotations

import os
import time

from donjon.wasi import abi
from donjon.wasi.context import HostContext
from donjon.wasi.errors import ProcExit, WasiError

#: ``typing`` and ``collections`` cost milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

_CLOCKS = {
    abi.CLOCK_REALTIME: time.time_ns,
    abi.CLOCK_MONOTONIC: time.monotonic_ns,
    abi.CLOCK_PROCESS_CPUTIME_ID: time.process_time_ns,
    abi.CLOCK_THREAD_CPUTIME_ID: time.thread_time_ns,
}

_CLOCK_NAMES: dict[int, Literal["time", "monotonic", "process_time", "thread_time"]] = {
    abi.CLOCK_REALTIME: "time",
    abi.CLOCK_MONOTONIC: "monotonic",
    abi.CLOCK_PROCESS_CPUTIME_ID: "process_time",
    abi.CLOCK_THREAD_CPUTIME_ID: "thread_time",
}


def _resolution_ns(clock: int) -> int:
    info = time.get_clock_info(_CLOCK_NAMES[clock])
    return max(1, round(info.resolution * 1e9))


class CoreCalls:
    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx
        self._resolutions: dict[int, int] = {}

    def _put_strings(self, items: list[bytes], ptrs: int, buf: int) -> int:
        mem = self.ctx.mem
        offset = buf
        for i, item in enumerate(items):
            mem.set_u32(ptrs + 4 * i, offset)
            mem.write_bytes(offset, item + b"\0")
            offset += len(item) + 1
        return abi.SUCCESS

    def _put_sizes(self, items: list[bytes], count_ptr: int, size_ptr: int) -> int:
        mem = self.ctx.mem
        mem.set_u32(count_ptr, len(items))
        mem.set_u32(size_ptr, sum(len(item) + 1 for item in items))
        return abi.SUCCESS

    def args_get(self, argv: int, argv_buf: int) -> int:
        return self._put_strings(self.ctx.args, argv, argv_buf)

    def args_sizes_get(self, count: int, size: int) -> int:
        return self._put_sizes(self.ctx.args, count, size)

    def environ_get(self, environ: int, environ_buf: int) -> int:
        return self._put_strings(self.ctx.env, environ, environ_buf)

    def environ_sizes_get(self, count: int, size: int) -> int:
        return self._put_sizes(self.ctx.env, count, size)

    def clock_res_get(self, clock: int, out: int) -> int:
        if clock not in _CLOCKS:
            raise WasiError(abi.EINVAL)
        res = self._resolutions.get(clock)
        if res is None:
            res = self._resolutions[clock] = _resolution_ns(clock)
        self.ctx.mem.set_u64(out, res)
        return abi.SUCCESS

    def clock_time_get(self, clock: int, _precision: int, out: int) -> int:
        read = _CLOCKS.get(clock)
        if read is None:
            raise WasiError(abi.EINVAL)
        self.ctx.mem.set_u64(out, read() & 0xFFFFFFFFFFFFFFFF)
        return abi.SUCCESS

    def random_get(self, buf: int, length: int) -> int:
        mem = self.ctx.mem
        mem.check(buf, length)
        chunk = 1 << 20
        for start in range(0, length, chunk):
            n = min(chunk, length - start)
            mem.write_bytes(buf + start, os.urandom(n))
        return abi.SUCCESS

    def proc_exit(self, code: int) -> None:
        raise ProcExit(code)

    def proc_raise(self, _signal: int) -> int:
        # wasmtime does not implement signals either, and answers NOTSUP.
        return abi.ENOTSUP

    def sched_yield(self) -> int:
        yield_ = getattr(os, "sched_yield", None)
        if yield_ is not None:
            yield_()
        else:
            time.sleep(0)
        return abi.SUCCESS
