"""The one place that touches wasmtime's private ctypes bindings (``wasmtime._ffi``).

``Linker.define_func`` goes through a generic trampoline that boxes every
argument in a ``Val`` (15-22 µs per call). The C API's
``wasmtime_linker_define_func_unchecked`` hands the callback a raw
``wasmtime_val_raw_t`` array instead (about 1 µs per call). This module wraps it
behind :func:`define`, so that a wasmtime upgrade that changes the private API
breaks one file and one test (``tests/wasi/test_fastcall.py``), not the host.

A host function receives its parameters as unsigned Python ints (i32 masked to
32 bits, i64 as u64) and returns an int for its one i32 result, or ``None`` when
it has no result. To stop the guest, it raises; the exception is kept in
:attr:`FastLinker.pending` and the guest sees a trap.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

#: wasmtime versions whose private ctypes layout this adapter was written against.
SUPPORTED_MAJOR = 49

#: ``wasmtime_val_raw_t`` is a 16-byte union; argument ``i`` starts at byte ``16 * i``.
_RAW_SIZE = 16

#: Our own prototype: the raw value array arrives as a plain address (an int) ...
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_size_t,
)
#: ... seen through a memoryview. wasmtime passes the same stack address for
#: every call made from the same depth, so the views are cached by address (a
#: few per run); building one per call costs more than the call itself.
_VIEW_CACHE_MAX = 256
#: the one i32 result goes back in the low 4 bytes of value 0
_RESULT = struct.Struct("<I")

_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()

HostFunction = Callable[..., int | None]


class FastcallUnavailable(RuntimeError):
    """The installed wasmtime does not offer the private API this adapter needs."""


def check_api() -> None:
    """Fail loudly when wasmtime changed what :class:`FastLinker` relies on.

    The version pin (``SUPPORTED_MAJOR``) is checked by the test suite, not here:
    reading package metadata costs milliseconds on every start.
    """
    for name in (
        "wasmtime_linker_define_func_unchecked",
        "wasmtime_func_unchecked_callback_t",
        "wasmtime_val_raw",
        "wasmtime_trap_new",
    ):
        if not hasattr(ffi, name):
            raise FastcallUnavailable(f"wasmtime._ffi has no {name}")
    if ctypes.sizeof(ffi.wasmtime_val_raw) != _RAW_SIZE:
        raise FastcallUnavailable(
            f"wasmtime_val_raw_t is {ctypes.sizeof(ffi.wasmtime_val_raw)} bytes, expected 16"
        )


def _new_trap(message: str) -> int:
    raw = message.encode()
    trap = ffi.wasmtime_trap_new(ctypes.create_string_buffer(raw), len(raw))
    value = ctypes.cast(trap, ctypes.c_void_p).value
    return int(value or 0)


class FastLinker:
    """A ``wasmtime.Linker`` plus the ctypes callbacks it points at (kept alive here)."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        check_api()
        self.linker = wasmtime.Linker(engine)
        self._keep: list[Any] = []
        #: the exception raised by the host function that trapped last, if any
        self.pending: BaseException | None = None

    def define(
        self,
        module: str,
        name: str,
        params: str,
        result: bool,
        func: HostFunction,
    ) -> None:
        """Define ``module.name`` with ``params`` a string of ``i`` (i32) / ``I`` (i64)."""
        valtypes = {"i": wasmtime.ValType.i32, "I": wasmtime.ValType.i64}
        functype = wasmtime.FuncType(
            [valtypes[p]() for p in params], [wasmtime.ValType.i32()] if result else []
        )
        callback = _CALLBACK(self._trampoline(func, params, result, f"{module}::{name}"))
        as_expected = ctypes.cast(callback, ffi.wasmtime_func_unchecked_callback_t)
        mod = module.encode()
        nam = name.encode()
        error = ffi.wasmtime_linker_define_func_unchecked(
            self.linker.ptr(),
            ctypes.create_string_buffer(mod),
            len(mod),
            ctypes.create_string_buffer(nam),
            len(nam),
            functype.ptr(),
            as_expected,
            None,
            _NO_FINALIZER,
        )
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        self._keep.extend((callback, as_expected, functype))

    def _trampoline(
        self, func: HostFunction, params: str, result: bool, label: str
    ) -> Callable[[Any, Any, Any, int], int]:
        """Build the ctypes callback.

        All parameters are decoded by one ``struct`` call over the raw value
        array (i32 read as its low 4 bytes: already unsigned, no masking), which
        is markedly cheaper than indexing a ctypes array once per parameter.
        """
        if len(params) > 16:
            raise ValueError(f"{label}: more than 16 parameters")
        layout = "".join("I12x" if p == "i" else "Q8x" for p in params)
        unpack = struct.Struct("<" + layout).unpack_from
        pack = _RESULT.pack_into
        size = _RAW_SIZE * max(len(params), 1)
        array = ctypes.c_ubyte * size
        linker = self
        views: dict[int, memoryview] = {}

        def view_at(address: int) -> memoryview:
            if len(views) >= _VIEW_CACHE_MAX:
                views.clear()
            view = views[address] = memoryview(array.from_address(address))
            return view

        def fail(exc: BaseException) -> int:
            linker.pending = exc
            return _new_trap(f"host function {label} stopped the guest")

        if result:

            def call_with_result(_env: Any, _caller: Any, address: int, _n: int) -> int:
                try:
                    view = views.get(address) or view_at(address)
                    pack(view, 0, func(*unpack(view)))
                    return 0
                except BaseException as exc:
                    return fail(exc)

            return call_with_result

        def call_without_result(_env: Any, _caller: Any, address: int, _n: int) -> int:
            try:
                view = views.get(address) or view_at(address)
                func(*unpack(view))
                return 0
            except BaseException as exc:
                return fail(exc)

        return call_without_result
