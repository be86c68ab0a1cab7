"""``run(spec)``: compile (or load from cache), link the WASI host, run ``_start``.

Exit status: ``proc_exit(n)`` gives ``n``; returning from ``_start`` gives 0; a
trap gives 134 with a one-line message; the wall-clock limit gives 124; a guest
that fails once its memory has reached the limit gives 137.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import wasmtime

from donjon.wasi.api import RunResult, RunSpec
from donjon.wasi.cache import ModuleCache, compile_module
from donjon.wasi.context import HostContext
from donjon.wasi.errors import (
    EXIT_MEMORY,
    EXIT_TIMEOUT,
    EXIT_TRAP,
    DeadlineExceeded,
    MemoryLimitExceeded,
    ModuleError,
    ProcExit,
)
from donjon.wasi.fastcall import FastLinker
from donjon.wasi.fdtable import FdTable
from donjon.wasi.host import MODULE, SIGNATURES, WasiHost
from donjon.wasi.memory import GuestMemory
from donjon.wasi.traps import describe_trap

_MIB = 1 << 20
#: proc_exit statuses must be below this (wasmtime's rule: 126+ mean "not run" or signals)
EXIT_STATUS_LIMIT = 126


@dataclass(frozen=True)
class EngineFlags:
    """Everything that changes compiled code; part of the module cache key."""

    epoch_interruption: bool

    def key(self) -> str:
        return f"v1;memory_may_move=0;epoch={int(self.epoch_interruption)}"

    def engine(self) -> wasmtime.Engine:
        config = wasmtime.Config()
        config.memory_may_move = False  # the host keeps a memoryview of linear memory
        config.epoch_interruption = self.epoch_interruption
        return wasmtime.Engine(config)


def load_module(
    spec: RunSpec,
    engine: wasmtime.Engine,
    flags: EngineFlags,
    progress: Callable[[str], None] | None = None,
) -> wasmtime.Module:
    where = str(spec.module)
    wasm = spec.module_bytes
    if wasm is None:
        try:
            wasm = spec.module.read_bytes()
        except OSError as exc:
            raise ModuleError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    if spec.cache_dir is None:
        if progress is not None:
            progress(f"compiling {where} ({len(wasm) // 1024} KiB)")
        return compile_module(engine, wasm, where)
    cache = ModuleCache(spec.cache_dir, flags.key(), key_file=spec.cache_key_file)
    return cache.load(engine, wasm, where, progress)


def check_wasi_command(module: wasmtime.Module, where: str) -> None:
    """Refuse, in one line, what we could not run: unknown imports, no ``_start``, no memory."""
    for imp in module.imports:
        if not isinstance(imp.type, wasmtime.FuncType):
            raise ModuleError(f"{where}: imports {imp.module}::{imp.name}, which is not a function")
        if imp.module != MODULE or imp.name not in SIGNATURES:
            raise ModuleError(
                f"{where}: imports {imp.module}::{imp.name}, which donjon does not provide "
                f"(only {MODULE} is)"
            )
    exports = {exp.name: exp.type for exp in module.exports}
    if not isinstance(exports.get("_start"), wasmtime.FuncType):
        raise ModuleError(f"{where}: not a WASI command: no exported _start function")
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        raise ModuleError(f"{where}: not a WASI command: no exported memory")


def _guest_memory(store: wasmtime.Store, memory: wasmtime.Memory) -> GuestMemory:
    def base() -> int:
        return ctypes.addressof(memory.data_ptr(store).contents)

    return GuestMemory(base, lambda: int(memory.data_len(store)))


def run(spec: RunSpec, *, progress: Callable[[str], None] | None = None) -> RunResult:
    """Run one WASI command module to completion. Raises :class:`DonjonError` on bad input.

    ``progress`` is told about slow steps (compiling a module the cache lacks).
    """
    limits = spec.limits
    flags = EngineFlags(epoch_interruption=limits.timeout_s is not None)
    engine = flags.engine()
    module = load_module(spec, engine, flags, progress)
    where = str(spec.module)
    check_wasi_command(module, where)

    store = wasmtime.Store(engine)
    if limits.memory_bytes is not None:
        store.set_limits(memory_size=limits.memory_bytes)
    if flags.epoch_interruption:
        store.set_epoch_deadline(1)

    fds = FdTable.build((spec.stdin, spec.stdout, spec.stderr), spec.preopens, spec.streams)
    ctx = HostContext(
        args=[a.encode() for a in spec.args],
        env=[f"{k}={v}".encode() for k, v in spec.env.items()],
        fds=fds,
        limits=limits,
    )
    timer: threading.Timer | None = None
    try:
        host = WasiHost(ctx)
        linker = FastLinker(engine)
        host.define(linker)
        try:
            instance = linker.linker.instantiate(store, module)
        except wasmtime.Trap as trap:
            return _trap_result(trap, linker, ctx, limits.memory_bytes)
        except wasmtime.WasmtimeError as exc:
            detail = " ".join(str(exc).split())
            if limits.memory_bytes is not None and "memory" in detail and "limit" in detail:
                raise MemoryLimitExceeded(
                    f"{where}: needs more memory at start than the limit of "
                    f"{limits.memory_bytes} bytes"
                ) from exc
            raise ModuleError(f"{where}: cannot instantiate: {detail}") from exc
        exports = instance.exports(store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        ctx.memory = _guest_memory(store, memory)
        start = exports["_start"]
        assert isinstance(start, wasmtime.Func)

        if limits.timeout_s is not None:
            ctx.set_deadline(time.monotonic() + limits.timeout_s)
            timer = threading.Timer(limits.timeout_s, engine.increment_epoch)
            timer.daemon = True
            timer.start()
        try:
            start(store)
        except wasmtime.Trap as trap:
            return _trap_result(trap, linker, ctx, limits.memory_bytes)
        except wasmtime.WasmtimeError as exc:
            # wasmtime reports some host-side stops as plain errors; same handling.
            return _trap_result(exc, linker, ctx, limits.memory_bytes)
        return RunResult(exit_code=0)
    finally:
        if timer is not None:
            timer.cancel()
        fds.close_all()


def _trap_result(
    trap: Exception, linker: FastLinker, ctx: HostContext, memory_limit: int | None
) -> RunResult:
    pending = linker.pending
    linker.pending = None
    if isinstance(pending, ProcExit):
        code = pending.code
        if code >= EXIT_STATUS_LIMIT:
            # As wasmtime: statuses from 126 up are reserved for the runtime's own codes.
            return RunResult(
                exit_code=1,
                trap=f"exit with invalid exit status {code} (outside of [0..{EXIT_STATUS_LIMIT}))",
            )
        if code != 0 and _at_memory_limit(ctx, memory_limit):
            return _memory_result(memory_limit, f"exited with {code}")
        return RunResult(exit_code=code)
    if isinstance(pending, DeadlineExceeded):
        return _timeout_result(ctx)
    if pending is not None:
        # A bug in the host, not in the guest: let it be seen with its traceback.
        raise pending
    if isinstance(trap, wasmtime.Trap) and trap.trap_code is wasmtime.TrapCode.INTERRUPT:
        return _timeout_result(ctx)
    described = describe_trap(trap)
    if _at_memory_limit(ctx, memory_limit):
        return _memory_result(memory_limit, f"stopped with {described}")
    return RunResult(exit_code=EXIT_TRAP, trap=described)


def _timeout_result(ctx: HostContext) -> RunResult:
    limit = ctx.limits.timeout_s
    return RunResult(
        exit_code=EXIT_TIMEOUT, trap=f"timeout: wall-clock limit of {limit:g} s reached"
    )


def _at_memory_limit(ctx: HostContext, limit: int | None) -> bool:
    """Whether a failed guest had (nearly) reached the memory limit.

    wasmtime's C API does not report a refused ``memory.grow``, so this is a
    rule, documented in docs/wasi.md: the guest failed and less than
    ``max(1 MiB, limit / 8)`` of the limit was left, which is where an
    allocator's next growth step is refused.
    """
    if limit is None or ctx.memory is None:
        return False
    ctx.memory.refresh()
    return ctx.memory.size + max(_MIB, limit // 8) > limit


def _memory_result(limit: int | None, what: str) -> RunResult:
    return RunResult(
        exit_code=EXIT_MEMORY,
        trap=f"memory limit of {limit} bytes reached (the guest then {what})",
    )
