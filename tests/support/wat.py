"""Tiny WASI commands written in WAT for tests that need two modules that differ."""

from __future__ import annotations

import wasmtime

_PRINT = """(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{text}\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const {length}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def printer(text: str) -> bytes:
    """A WASI command that writes ``text`` and a newline to stdout (ASCII only)."""
    return bytes(wasmtime.wat2wasm(_PRINT.format(text=text, length=len(text) + 1)))
