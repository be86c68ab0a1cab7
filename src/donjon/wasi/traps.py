"""One-line descriptions of wasm traps, worded as wasmtime words them."""

from __future__ import annotations

from donjon.wasi.capi import Trap

_WORDS: dict[str, str] = {
    "STACK_OVERFLOW": "call stack exhausted",
    "MEMORY_OUT_OF_BOUNDS": "out of bounds memory access",
    "HEAP_MISALIGNED": "misaligned memory access",
    "TABLE_OUT_OF_BOUNDS": "undefined element: out of bounds table access",
    "INDIRECT_CALL_TO_NULL": "uninitialized element",
    "BAD_SIGNATURE": "indirect call type mismatch",
    "INTEGER_OVERFLOW": "integer overflow",
    "INTEGER_DIVISION_BY_ZERO": "integer divide by zero",
    "BAD_CONVERSION_TO_INTEGER": "invalid conversion to integer",
    "UNREACHABLE": "wasm `unreachable` instruction executed",
    "INTERRUPT": "interrupt",
    "OUT_OF_FUEL": "all fuel consumed",
}


def describe_trap(error: Exception) -> str:
    """``trap: integer divide by zero in func foo``; never more than one line."""
    what = None
    where = ""
    if isinstance(error, Trap):
        code = error.code_name
        if code is not None:
            what = _WORDS.get(code, code.lower().replace("_", " "))
        frames = error.frames
        if frames:
            frame = frames[0]
            name = frame.func_name
            where = f" in func {name}" if name else f" in func #{frame.func_index}"
    if what is None:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        what = lines[-1] if lines else type(error).__name__
        what = what.removeprefix("wasm trap: ")
    return f"trap: {what}{where}"
