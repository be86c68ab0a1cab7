"""``run(spec)``: compile (or load from cache), link the WASI host, run ``_start``.

Exit status: ``proc_exit(n)`` gives ``n``; returning from ``_start`` gives 0; a
trap gives 134 with a one-line message; the wall-clock limit gives 124; a guest
that fails once its memory has reached the limit gives 137.
"""

from __future__ import annotations

import os
import time

from donjon.wasi import capi
from donjon.wasi.api import RunResult
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

#: ``typing``, ``dataclasses`` and ``threading`` cost milliseconds to import; mypy reads
#: this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from threading import Timer

    from donjon.wasi.api import RunSpec

_MIB = 1 << 20
#: proc_exit statuses must be below this (wasmtime's rule: 126+ mean "not run" or signals)
EXIT_STATUS_LIMIT = 126


class EngineFlags:
    """Everything that changes compiled code; part of the module cache key."""

    __slots__ = ("epoch_interruption",)

    def __init__(self, epoch_interruption: bool) -> None:
        self.epoch_interruption = epoch_interruption

    def key(self) -> str:
        return f"v1;memory_may_move=0;epoch={int(self.epoch_interruption)}"

    def engine(self) -> capi.Engine:
        # The host keeps a memoryview of linear memory: it must never move.
        return capi.Engine(memory_may_move=False, epoch_interruption=self.epoch_interruption)


def load_module(
    spec: RunSpec,
    engine: capi.Engine,
    flags: EngineFlags,
    progress: Callable[[str], None] | None = None,
) -> capi.Module:
    where = os.fspath(spec.module)
    wasm = spec.module_bytes
    if wasm is None:
        try:
            with open(where, "rb") as file:
                wasm = file.read()
        except OSError as exc:
            raise ModuleError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    if spec.cache_dir is None:
        if progress is not None:
            progress(f"compiling {where} ({len(wasm) // 1024} KiB)")
        return compile_module(engine, wasm, where)
    cache = ModuleCache(spec.cache_dir, flags.key(), key_file=spec.cache_key_file)
    return cache.load(engine, wasm, where, progress)


def check_wasi_command(module: capi.Module, where: str) -> list[str]:
    """Refuse, in one line, what we could not run: unknown imports, no ``_start``, no memory.

    Returns the names of the WASI functions the module imports.
    """
    imports = module.imports()
    for imp_module, imp_name, kind in imports:
        if kind != "func":
            raise ModuleError(f"{where}: imports {imp_module}::{imp_name}, which is not a function")
        if imp_module != MODULE or imp_name not in SIGNATURES:
            raise ModuleError(
                f"{where}: imports {imp_module}::{imp_name}, which donjon does not provide "
                f"(only {MODULE} is)"
            )
    exports = module.exports()
    if exports.get("_start") != "func":
        raise ModuleError(f"{where}: not a WASI command: no exported _start function")
    if exports.get("memory") != "memory":
        raise ModuleError(f"{where}: not a WASI command: no exported memory")
    return list(dict.fromkeys(name for _, name, _ in imports))  # a name may be imported twice


def _guest_memory(store: capi.Store, memory: capi.Extern) -> GuestMemory:
    return GuestMemory(lambda: store.memory_base(memory), lambda: store.memory_size(memory))


def run(spec: RunSpec, *, progress: Callable[[str], None] | None = None) -> RunResult:
    """Run one WASI command module to completion. Raises :class:`DonjonError` on bad input.

    ``progress`` is told about slow steps (compiling a module the cache lacks).
    """
    limits = spec.limits
    flags = EngineFlags(epoch_interruption=limits.timeout_s is not None)
    with flags.engine() as engine, load_module(spec, engine, flags, progress) as module:
        imported = check_wasi_command(module, os.fspath(spec.module))
        # The store goes first: the linker keeps alive the callbacks its instances call.
        with FastLinker(engine) as linker, capi.Store(engine) as store:
            return _run_in(spec, engine, module, imported, linker, store)


def _run_in(
    spec: RunSpec,
    engine: capi.Engine,
    module: capi.Module,
    imported: list[str],
    linker: FastLinker,
    store: capi.Store,
) -> RunResult:
    limits = spec.limits
    where = os.fspath(spec.module)
    if limits.memory_bytes is not None:
        store.limit_memory(limits.memory_bytes)
    if limits.timeout_s is not None:
        store.set_epoch_deadline(1)

    fds = FdTable.build((spec.stdin, spec.stdout, spec.stderr), spec.preopens, spec.streams)
    ctx = HostContext(
        args=[a.encode() for a in spec.args],
        env=[f"{k}={v}".encode() for k, v in spec.env.items()],
        fds=fds,
        limits=limits,
    )
    timer: Timer | None = None
    try:
        WasiHost(ctx).define(linker, imported)
        try:
            instance = linker.linker.instantiate(store, module)
        except capi.Trap as trap:
            return _trap_result(trap, linker, ctx, limits.memory_bytes)
        except capi.WasmtimeError as exc:
            detail = " ".join(str(exc).split())
            if limits.memory_bytes is not None and "memory" in detail and "limit" in detail:
                raise MemoryLimitExceeded(
                    f"{where}: needs more memory at start than the limit of "
                    f"{limits.memory_bytes} bytes"
                ) from exc
            raise ModuleError(f"{where}: cannot instantiate: {detail}") from exc
        memory = store.export(instance, "memory")
        start = store.export(instance, "_start")
        assert memory is not None and memory.kind == capi.EXTERN_MEMORY
        assert start is not None and start.kind == capi.EXTERN_FUNC
        ctx.memory = _guest_memory(store, memory)

        if limits.timeout_s is not None:
            from threading import Timer  # only runs with a time limit pay for threading

            ctx.set_deadline(time.monotonic() + limits.timeout_s)
            timer = Timer(limits.timeout_s, engine.increment_epoch)
            timer.daemon = True
            timer.start()
        try:
            store.call(start)
        except (capi.Trap, capi.WasmtimeError) as trap:
            # wasmtime reports some host-side stops as plain errors; same handling.
            return _trap_result(trap, linker, ctx, limits.memory_bytes)
        return RunResult(exit_code=0)
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()  # the engine must outlive a timer that is already firing
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
    if isinstance(trap, capi.Trap) and trap.code == capi.TRAP_INTERRUPT:
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
