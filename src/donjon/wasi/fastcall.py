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
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

#: wasmtime versions whose private ctypes layout this adapter was written against.
SUPPORTED_MAJOR = 49

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
#: ``wasmtime_val_raw_t`` is a 16-byte union; argument ``i`` is u64 word ``2 * i``.
_RAW_WORDS = 2

#: Our own prototype: the raw value array arrives as a plain address (an int) ...
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_size_t,
)
#: ... seen through a ``uint64_t[]`` array object. wasmtime passes the same stack
#: address for every call made from the same depth, so these objects are cached
#: by address (a few per run); building one per call costs more than the call.
_WORDS = ctypes.c_uint64 * (2 * 16)
_VIEW_CACHE_MAX = 256

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
    if ctypes.sizeof(ffi.wasmtime_val_raw) != 8 * _RAW_WORDS:
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
        """Build the ctypes callback; the common arities get unrolled bodies (it matters)."""
        masks = [(_RAW_WORDS * i, _M32 if p == "i" else _M64) for i, p in enumerate(params)]
        if len(params) > 16:
            raise ValueError(f"{label}: more than 16 parameters")
        linker = self
        views: dict[int, Any] = {}
        from_address = _WORDS.from_address

        def words(address: int) -> Any:
            view = views.get(address)
            if view is None:
                if len(views) >= _VIEW_CACHE_MAX:
                    views.clear()
                view = views[address] = from_address(address)
            return view

        def fail(exc: BaseException) -> int:
            linker.pending = exc
            return _new_trap(f"host function {label} stopped the guest")

        if all(p == "i" for p in params) and result and len(params) <= 4:
            n = len(params)
            if n == 1:

                def cb1(_env: Any, _caller: Any, address: Any, _n: int) -> int:
                    try:
                        v = views.get(address) or words(address)
                        v[0] = func(v[0] & _M32)
                        return 0
                    except BaseException as exc:
                        return fail(exc)

                return cb1
            if n == 2:

                def cb2(_env: Any, _caller: Any, address: Any, _n: int) -> int:
                    try:
                        v = views.get(address) or words(address)
                        v[0] = func(v[0] & _M32, v[2] & _M32)
                        return 0
                    except BaseException as exc:
                        return fail(exc)

                return cb2
            if n == 3:

                def cb3(_env: Any, _caller: Any, address: Any, _n: int) -> int:
                    try:
                        v = views.get(address) or words(address)
                        v[0] = func(v[0] & _M32, v[2] & _M32, v[4] & _M32)
                        return 0
                    except BaseException as exc:
                        return fail(exc)

                return cb3
            if n == 4:

                def cb4(_env: Any, _caller: Any, address: Any, _n: int) -> int:
                    try:
                        v = views.get(address) or words(address)
                        v[0] = func(v[0] & _M32, v[2] & _M32, v[4] & _M32, v[6] & _M32)
                        return 0
                    except BaseException as exc:
                        return fail(exc)

                return cb4

        def generic(_env: Any, _caller: Any, address: Any, _n: int) -> int:
            try:
                v = views.get(address) or words(address)
                out = func(*[v[i] & m for i, m in masks])
                if result:
                    v[0] = out
                return 0
            except BaseException as exc:
                return fail(exc)

        return generic
