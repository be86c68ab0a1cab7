"""Donjon's own ctypes binding of libwasmtime: only the C-API functions it calls.

Importing the ``wasmtime`` package builds ctypes prototypes for its ~900 C
functions and its component-model layer on every process start: 20-60 ms of
``donjon run-wasm``'s start-up (``bench/wasi_startup.py``). Donjon calls about
forty. The package still ships the library; this module loads that same file
(``wasmtime/<os>-<machine>/_libwasmtime.*``) without importing the package, and
binds those functions by the public C headers of the pinned major version
(``wasm.h``, ``wasmtime/*.h``). ``tests/wasi/test_capi.py`` checks every layout
and prototype here against the package's generated bindings, so a wasmtime
upgrade that changes one fails there, not in a guest.

Every handle is closed explicitly (``close()`` or ``with``); errors and traps
are copied into Python exceptions and freed at once, so nothing leaks when a
Keep runs many modules in one process.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    POINTER,
    byref,
    c_bool,
    c_char_p,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

#: ``typing`` costs milliseconds to import; mypy reads this name as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Any, Self

    #: (env, caller, address of the raw value array, its length) -> a wasm_trap_t* or 0
    RawCallback = Callable[[Any, Any, int, int], int]

#: the wasmtime major version whose C headers these prototypes and layouts follow
SUPPORTED_MAJOR = 49

#: ``wasm_valkind_t`` (wasm.h)
WASM_I32 = 0
WASM_I64 = 1
#: ``wasmtime_extern_kind_t`` (wasmtime/extern.h)
EXTERN_FUNC = 0
EXTERN_MEMORY = 3
#: ``wasmtime_trap_code_t`` (wasmtime/trap.h) by value, named as the wasmtime package names them
TRAP_CODES = (
    "STACK_OVERFLOW",
    "MEMORY_OUT_OF_BOUNDS",
    "HEAP_MISALIGNED",
    "TABLE_OUT_OF_BOUNDS",
    "INDIRECT_CALL_TO_NULL",
    "BAD_SIGNATURE",
    "INTEGER_OVERFLOW",
    "INTEGER_DIVISION_BY_ZERO",
    "BAD_CONVERSION_TO_INTEGER",
    "UNREACHABLE",
    "INTERRUPT",
    "OUT_OF_FUEL",
    "ATOMIC_WAIT_NON_SHARED_MEMORY",
    "NULL_REFERENCE",
    "ARRAY_OUT_OF_BOUNDS",
    "ALLOCATION_TOO_LARGE",
    "CAST_FAILURE",
    "CANNOT_ENTER_COMPONENT",
    "NO_ASYNC_RESULT",
    "UNHANDLED_TAG",
    "CONTINUATION_ALREADY_CONSUMED",
    "DISABLED_OPCODE",
    "ASYNC_DEADLOCK",
    "CANNOT_LEAVE_COMPONENT",
    "CANNOT_BLOCK_SYNC_TASK",
    "INVALID_CHAR",
    "DEBUG_ASSERT_STRING_ENCODING_FINISHED",
    "DEBUG_ASSERT_EQUAL_CODE_UNITS",
    "DEBUG_ASSERT_POINTER_ALIGNED",
    "DEBUG_ASSERT_UPPER_BITS_UNSET",
    "STRING_OUT_OF_BOUNDS",
    "LIST_OUT_OF_BOUNDS",
    "INVALID_DISCRIMINANT",
    "UNALIGNED_POINTER",
    "TASK_CANCEL_NOT_CANCELLED",
    "TASK_CANCEL_OR_RETURN_TWICE",
    "SUBTASK_CANCEL_AFTER_TERMINAL",
    "TASK_RETURN_INVALID",
    "WAITABLE_SET_DROP_HAS_WAITERS",
    "SUBTASK_DROP_NOT_RESOLVED",
    "THREAD_NEW_INDIRECT_INVALID_TYPE",
    "THREAD_NEW_INDIRECT_UNINITIALIZED",
    "BACKPRESSURE_OVERFLOW",
    "UNSUPPORTED_CALLBACK_CODE",
    "CANNOT_RESUME_THREAD",
    "CONCURRENT_FUTURE_STREAM_OP",
    "REFERENCE_COUNT_OVERFLOW",
    "STREAM_OP_TOO_BIG",
    "WAITABLE_SYNC_AND_ASYNC",
    "UNCAUGHT_EXCEPTION",
)
TRAP_INTERRUPT = TRAP_CODES.index("INTERRUPT")


class EngineUnavailable(RuntimeError):
    """libwasmtime is missing, or lacks a function Donjon binds."""


class WasmtimeError(Exception):
    """An error the engine returned (``wasmtime_error_t``), as its one message."""


class Frame:
    __slots__ = ("func_index", "func_name")

    def __init__(self, func_name: str | None, func_index: int) -> None:
        self.func_name = func_name
        self.func_index = func_index


class Trap(Exception):
    """A wasm trap (``wasm_trap_t``): its message, code (None for a host trap) and frames."""

    def __init__(self, message: str, code: int | None, frames: list[Frame]) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.frames = frames

    @property
    def code_name(self) -> str | None:
        code = self.code
        if code is None:
            return None
        return TRAP_CODES[code] if code < len(TRAP_CODES) else f"CODE_{code}"

    def __str__(self) -> str:
        return self.message


# --- layouts (wasm.h, wasmtime/extern.h, wasmtime/instance.h) ----------------------------


class ByteVec(ctypes.Structure):
    """``wasm_byte_vec_t`` / ``wasm_name_t``, and every other ``*_vec_t`` (size, data)."""

    _fields_ = [("size", c_size_t), ("data", c_void_p)]


class Instance(ctypes.Structure):
    """``wasmtime_instance_t``."""

    _fields_ = [("store_id", c_uint64), ("private", c_size_t)]


class Extern(ctypes.Structure):
    """``wasmtime_extern_t``: a kind byte, then a 24-byte union (func, memory, ...)."""

    _fields_ = [("kind", c_uint8), ("of", c_uint64 * 3)]

    @property
    def item(self) -> int:
        """Address of the union: a ``wasmtime_func_t*`` or ``wasmtime_memory_t*``."""
        return ctypes.addressof(self) + Extern.of.offset


#: ``wasmtime_func_unchecked_callback_t``: (env, caller, args_and_results, nargs_and_results)
CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_size_t)
FINALIZER = ctypes.CFUNCTYPE(None, c_void_p)
_NO_FINALIZER = FINALIZER()


# --- the library ---------------------------------------------------------------------------


def _machine() -> str:
    uname = getattr(os, "uname", None)
    if uname is not None:
        machine: str = uname().machine
    else:  # Windows
        import platform

        machine = platform.machine()
    return {"AMD64": "x86_64", "arm64": "aarch64", "ARM64": "aarch64"}.get(machine, machine)


def library_path() -> str:
    """The libwasmtime that the installed ``wasmtime`` package ships (not imported).

    Looked for beside each ``sys.path`` entry first (a few ``stat`` calls), then
    through the import system, which also knows zip and custom installs.
    """
    system = "linux" if sys.platform.startswith("linux") else sys.platform
    name = {"win32": "_wasmtime.dll", "darwin": "_libwasmtime.dylib"}.get(system, "_libwasmtime.so")
    relative = os.path.join(f"{system}-{_machine()}", name)
    for entry in sys.path:
        package = os.path.join(entry or ".", "wasmtime")
        if os.path.isfile(os.path.join(package, "__init__.py")):
            path = os.path.join(package, relative)
            if os.path.isfile(path):
                return path
            break  # the package Python would import: no engine library for this host
    else:
        import importlib.util

        spec = importlib.util.find_spec("wasmtime")
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        if not folders:
            raise EngineUnavailable(
                "the wasmtime package is not installed: pip install 'wasmtime>=49,<50'"
            )
        path = os.path.join(folders[0], relative)
        if os.path.isfile(path):
            return path
    raise EngineUnavailable(f"the wasmtime package has no engine library for this host: {path}")


LIBRARY = library_path()
_lib = ctypes.CDLL(LIBRARY)


#: every bound function by C name (tests compare them with the wasmtime package's prototypes)
BOUND: dict[str, ctypes._NamedFuncPointer] = {}


def _fn(name: str, restype: Any, *argtypes: Any) -> ctypes._NamedFuncPointer:
    try:
        func: ctypes._NamedFuncPointer = getattr(_lib, name)
    except AttributeError as exc:
        raise EngineUnavailable(f"{LIBRARY} has no {name}: not wasmtime {SUPPORTED_MAJOR}") from exc
    func.restype = restype
    func.argtypes = argtypes
    BOUND[name] = func
    return func


_P = c_void_p
_config_new = _fn("wasm_config_new", _P)
_config_memory_may_move = _fn("wasmtime_config_memory_may_move_set", None, _P, c_bool)
_config_epoch = _fn("wasmtime_config_epoch_interruption_set", None, _P, c_bool)
_engine_new = _fn("wasm_engine_new_with_config", _P, _P)
_engine_delete = _fn("wasm_engine_delete", None, _P)
_engine_increment_epoch = _fn("wasmtime_engine_increment_epoch", None, _P)
_module_new = _fn("wasmtime_module_new", _P, _P, c_char_p, c_size_t, POINTER(_P))
_module_deserialize = _fn("wasmtime_module_deserialize", _P, _P, c_char_p, c_size_t, POINTER(_P))
_module_serialize = _fn("wasmtime_module_serialize", _P, _P, POINTER(ByteVec))
_module_delete = _fn("wasmtime_module_delete", None, _P)
_module_imports = _fn("wasmtime_module_imports", None, _P, POINTER(ByteVec))
_module_exports = _fn("wasmtime_module_exports", None, _P, POINTER(ByteVec))
_importtype_vec_delete = _fn("wasm_importtype_vec_delete", None, POINTER(ByteVec))
_exporttype_vec_delete = _fn("wasm_exporttype_vec_delete", None, POINTER(ByteVec))
_importtype_module = _fn("wasm_importtype_module", _P, _P)
_importtype_name = _fn("wasm_importtype_name", _P, _P)
_importtype_type = _fn("wasm_importtype_type", _P, _P)
_exporttype_name = _fn("wasm_exporttype_name", _P, _P)
_exporttype_type = _fn("wasm_exporttype_type", _P, _P)
_as_functype = _fn("wasm_externtype_as_functype_const", _P, _P)
_as_memorytype = _fn("wasm_externtype_as_memorytype_const", _P, _P)
_byte_vec_delete = _fn("wasm_byte_vec_delete", None, POINTER(ByteVec))
_valtype_new = _fn("wasm_valtype_new", _P, c_uint8)
_valtype_vec_new = _fn("wasm_valtype_vec_new", None, POINTER(ByteVec), c_size_t, POINTER(_P))
_functype_new = _fn("wasm_functype_new", _P, POINTER(ByteVec), POINTER(ByteVec))
_functype_delete = _fn("wasm_functype_delete", None, _P)
_store_new = _fn("wasmtime_store_new", _P, _P, _P, FINALIZER)
_store_context = _fn("wasmtime_store_context", _P, _P)
_store_delete = _fn("wasmtime_store_delete", None, _P)
_store_limiter = _fn(
    "wasmtime_store_limiter", None, _P, c_int64, c_int64, c_int64, c_int64, c_int64
)
_set_epoch_deadline = _fn("wasmtime_context_set_epoch_deadline", None, _P, c_uint64)
_linker_new = _fn("wasmtime_linker_new", _P, _P)
_linker_delete = _fn("wasmtime_linker_delete", None, _P)
_linker_define_unchecked = _fn(
    "wasmtime_linker_define_func_unchecked",
    _P,
    _P,
    c_char_p,
    c_size_t,
    c_char_p,
    c_size_t,
    _P,
    CALLBACK,
    _P,
    FINALIZER,
)
_linker_instantiate = _fn(
    "wasmtime_linker_instantiate", _P, _P, _P, _P, POINTER(Instance), POINTER(_P)
)
_instance_export_get = _fn(
    "wasmtime_instance_export_get",
    c_bool,
    _P,
    POINTER(Instance),
    c_char_p,
    c_size_t,
    POINTER(Extern),
)
_func_call = _fn("wasmtime_func_call", _P, _P, _P, _P, c_size_t, _P, c_size_t, POINTER(_P))
_memory_data = _fn("wasmtime_memory_data", _P, _P, _P)
_memory_data_size = _fn("wasmtime_memory_data_size", c_size_t, _P, _P)
_error_message = _fn("wasmtime_error_message", None, _P, POINTER(ByteVec))
_error_delete = _fn("wasmtime_error_delete", None, _P)
_trap_new = _fn("wasmtime_trap_new", _P, c_char_p, c_size_t)
_trap_message = _fn("wasm_trap_message", None, _P, POINTER(ByteVec))
_trap_code = _fn("wasmtime_trap_code", c_bool, _P, POINTER(c_uint8))
_trap_trace = _fn("wasm_trap_trace", None, _P, POINTER(ByteVec))
_trap_delete = _fn("wasm_trap_delete", None, _P)
_frame_vec_delete = _fn("wasm_frame_vec_delete", None, POINTER(ByteVec))
_frame_func_name = _fn("wasmtime_frame_func_name", _P, _P)
_frame_func_index = _fn("wasm_frame_func_index", c_uint32, _P)


# --- errors and traps ----------------------------------------------------------------------


def _text(address: int, size: int) -> str:
    return ctypes.string_at(address, size).decode("utf-8", "replace") if size else ""


def _name(vec_address: int | None) -> str | None:
    """A borrowed ``const wasm_name_t*``, copied (None for a null pointer)."""
    if not vec_address:
        return None
    vec = ByteVec.from_address(vec_address)
    return _text(vec.data or 0, vec.size)


def _vec_items(vec: ByteVec) -> list[int]:
    if not vec.size:
        return []
    return [p or 0 for p in (c_void_p * vec.size).from_address(vec.data or 0)]


def take_error(error: int) -> WasmtimeError:
    """Copy a ``wasmtime_error_t*`` into an exception and free it."""
    vec = ByteVec()
    try:
        _error_message(error, byref(vec))
        message = _text(vec.data or 0, vec.size)
        _byte_vec_delete(byref(vec))
    finally:
        _error_delete(error)
    return WasmtimeError(message)


def take_trap(trap: int) -> Trap:
    """Copy a ``wasm_trap_t*`` (message, code, frames) into an exception and free it."""
    try:
        vec = ByteVec()
        _trap_message(trap, byref(vec))
        message = _text(vec.data or 0, max(0, vec.size - 1))  # drop the trailing NUL
        _byte_vec_delete(byref(vec))
        code = c_uint8()
        has_code = _trap_code(trap, byref(code))
        frames_vec = ByteVec()
        _trap_trace(trap, byref(frames_vec))
        frames = [
            Frame(_name(_frame_func_name(f)), int(_frame_func_index(f)))
            for f in _vec_items(frames_vec)
        ]
        _frame_vec_delete(byref(frames_vec))
    finally:
        _trap_delete(trap)
    return Trap(message, int(code.value) if has_code else None, frames)


def new_trap(message: str) -> int:
    """A ``wasm_trap_t*`` for a host callback to return (the engine takes ownership)."""
    raw = message.encode()
    return int(_trap_new(raw, len(raw)) or 0)


def _check(error: int | None, trap: c_void_p | None = None) -> None:
    if error:
        if trap is not None and trap.value:
            _trap_delete(trap.value)
        raise take_error(error)
    if trap is not None and trap.value:
        raise take_trap(trap.value)


# --- handles -------------------------------------------------------------------------------


class _Handle:
    """Owns one C object; ``close()`` frees it once."""

    __slots__ = ("ptr",)
    _delete: Callable[[int], None]

    def __init__(self, ptr: int | None) -> None:
        if not ptr:
            raise MemoryError(f"{type(self).__name__}: the engine returned NULL")
        self.ptr: int = ptr

    def close(self) -> None:
        ptr, self.ptr = self.ptr, 0
        if ptr:
            type(self)._delete(ptr)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Engine(_Handle):
    __slots__ = ()
    _delete = _engine_delete

    def __init__(self, *, memory_may_move: bool = True, epoch_interruption: bool = False) -> None:
        config = _config_new()
        _config_memory_may_move(config, memory_may_move)
        _config_epoch(config, epoch_interruption)
        super().__init__(_engine_new(config))  # the engine owns the config now

    def increment_epoch(self) -> None:
        """Safe from any thread: interrupts guests whose deadline has passed."""
        _engine_increment_epoch(self.ptr)


class Module(_Handle):
    __slots__ = ()
    _delete = _module_delete

    @classmethod
    def compile(cls, engine: Engine, wasm: bytes | bytearray) -> Module:
        wasm = bytes(wasm)
        out = c_void_p()
        _check(_module_new(engine.ptr, wasm, len(wasm), byref(out)))
        return cls(out.value)

    @classmethod
    def deserialize(cls, engine: Engine, payload: bytes) -> Module:
        """Native code from :meth:`serialize`: trusted input only (the cache checks a digest)."""
        out = c_void_p()
        _check(_module_deserialize(engine.ptr, payload, len(payload), byref(out)))
        return cls(out.value)

    def serialize(self) -> bytes:
        vec = ByteVec()
        _check(_module_serialize(self.ptr, byref(vec)))
        try:
            return ctypes.string_at(vec.data or 0, vec.size)
        finally:
            _byte_vec_delete(byref(vec))

    def imports(self) -> list[tuple[str, str, str]]:
        """``(module, name, kind)`` with kind ``func``, ``memory`` or ``other``."""
        vec = ByteVec()
        _module_imports(self.ptr, byref(vec))
        try:
            return [
                (
                    _name(_importtype_module(item)) or "",
                    _name(_importtype_name(item)) or "",
                    _kind(_importtype_type(item)),
                )
                for item in _vec_items(vec)
            ]
        finally:
            _importtype_vec_delete(byref(vec))

    def exports(self) -> dict[str, str]:
        """name -> kind (``func``, ``memory`` or ``other``)."""
        vec = ByteVec()
        _module_exports(self.ptr, byref(vec))
        try:
            return {
                _name(_exporttype_name(item)) or "": _kind(_exporttype_type(item))
                for item in _vec_items(vec)
            }
        finally:
            _exporttype_vec_delete(byref(vec))


def _kind(externtype: int | None) -> str:
    if _as_functype(externtype):
        return "func"
    if _as_memorytype(externtype):
        return "memory"
    return "other"


class Store(_Handle):
    __slots__ = ("context",)
    _delete = _store_delete

    def __init__(self, engine: Engine) -> None:
        super().__init__(_store_new(engine.ptr, None, _NO_FINALIZER))
        self.context: int = _store_context(self.ptr)

    def limit_memory(self, size: int) -> None:
        """Linear memory may not grow past ``size`` bytes (``memory.grow`` returns -1)."""
        _store_limiter(self.ptr, size, -1, -1, -1, -1)

    def set_epoch_deadline(self, ticks: int) -> None:
        _set_epoch_deadline(self.context, ticks)

    def export(self, instance: Instance, name: str) -> Extern | None:
        item = Extern()
        raw = name.encode()
        if not _instance_export_get(self.context, byref(instance), raw, len(raw), byref(item)):
            return None
        return item

    def call(self, func: Extern) -> None:
        """Call a function that takes and returns nothing; raises :class:`Trap` or an error."""
        trap = c_void_p()
        error = _func_call(self.context, func.item, None, 0, None, 0, byref(trap))
        _check(error, trap)

    def memory_base(self, memory: Extern) -> int:
        return int(_memory_data(self.context, memory.item) or 0)

    def memory_size(self, memory: Extern) -> int:
        return int(_memory_data_size(self.context, memory.item))


class Linker(_Handle):
    __slots__ = ("_keep",)
    _delete = _linker_delete

    def __init__(self, engine: Engine) -> None:
        super().__init__(_linker_new(engine.ptr))
        #: the callbacks the engine points at: alive as long as this linker
        self._keep: list[object] = []

    def define_unchecked(
        self, module: str, name: str, params: str, result: bool, callback: RawCallback
    ) -> None:
        """Define ``module.name`` with ``params`` a string of ``i`` (i32) / ``I`` (i64)."""
        ptr = CALLBACK(callback)
        functype = _functype(params, result)
        try:
            mod, nam = module.encode(), name.encode()
            error = _linker_define_unchecked(
                self.ptr, mod, len(mod), nam, len(nam), functype, ptr, None, _NO_FINALIZER
            )
        finally:
            _functype_delete(functype)  # the linker keeps its own copy of the type
        _check(error)
        self._keep.append(ptr)

    def instantiate(self, store: Store, module: Module) -> Instance:
        instance = Instance()
        trap = c_void_p()
        error = _linker_instantiate(
            self.ptr, store.context, module.ptr, byref(instance), byref(trap)
        )
        _check(error, trap)
        return instance


def _functype(params: str, result: bool) -> int:
    kinds = {"i": WASM_I32, "I": WASM_I64}
    param_types = (c_void_p * max(1, len(params)))(*[_valtype_new(kinds[p]) for p in params])
    result_types = (c_void_p * 1)(_valtype_new(WASM_I32) if result else None)
    param_vec, result_vec = ByteVec(), ByteVec()
    _valtype_vec_new(byref(param_vec), len(params), param_types)
    _valtype_vec_new(byref(result_vec), 1 if result else 0, result_types)
    return int(_functype_new(byref(param_vec), byref(result_vec)))  # owns both vectors
