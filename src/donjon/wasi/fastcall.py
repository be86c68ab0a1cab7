"""Host functions through ``wasmtime_linker_define_func_unchecked`` (about 1 µs a call).

A generic host-function trampoline that boxes every argument in a value object
costs 15-22 µs per call. The C API's unchecked variant hands the callback a raw
``wasmtime_val_raw_t`` array instead; this module decodes it with one
``struct`` call and calls the host function with plain ints.

A host function receives its parameters as unsigned Python ints (i32 masked to
32 bits, i64 as u64) and returns an int for its one i32 result, or ``None`` when
it has no result. To stop the guest, it raises; the exception is kept in
:attr:`FastLinker.pending` and the guest sees a trap.
"""

from __future__ import annotations

import ctypes
import struct

from donjon.wasi import capi

#: ``typing`` costs milliseconds to import; mypy reads this name as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    HostFunction = Callable[..., int | None]

#: the wasmtime major version the engine binding follows (kept here for the version test)
SUPPORTED_MAJOR = capi.SUPPORTED_MAJOR

#: ``wasmtime_val_raw_t`` is a 16-byte union; argument ``i`` starts at byte ``16 * i``.
_RAW_SIZE = 16

#: wasmtime passes the same stack address for every call made from the same
#: depth, so the memoryviews over the raw value array are cached by address (a
#: few per run); building one per call costs more than the call itself.
_VIEW_CACHE_MAX = 256
#: the one i32 result goes back in the low 4 bytes of value 0
_RESULT = struct.Struct("<I")


class FastLinker:
    """A :class:`capi.Linker` plus the exception of the host function that trapped last."""

    def __init__(self, engine: capi.Engine) -> None:
        self.linker = capi.Linker(engine)
        #: the exception raised by the host function that trapped last, if any
        self.pending: BaseException | None = None

    def close(self) -> None:
        self.linker.close()

    def __enter__(self) -> FastLinker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def define(
        self,
        module: str,
        name: str,
        params: str,
        result: bool,
        func: HostFunction,
    ) -> None:
        """Define ``module.name`` with ``params`` a string of ``i`` (i32) / ``I`` (i64)."""
        callback = self._trampoline(func, params, result, f"{module}::{name}")
        self.linker.define_unchecked(module, name, params, result, callback)

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
            return capi.new_trap(f"host function {label} stopped the guest")

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
