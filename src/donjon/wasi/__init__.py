"""donjon.wasi: a WASI preview1 host on wasmtime, with sandboxed files and sockets.

``run(spec)`` is the entry point; :mod:`donjon.wasi.api` describes a run.
"""

from __future__ import annotations

from donjon.wasi.api import Limits, Preopen, RunResult, RunSpec, Stdio, StdioKind
from donjon.wasi.errors import EXIT_MEMORY, EXIT_TIMEOUT, EXIT_TRAP, ModuleError
from donjon.wasi.runner import run

__all__ = [
    "EXIT_MEMORY",
    "EXIT_TIMEOUT",
    "EXIT_TRAP",
    "Limits",
    "ModuleError",
    "Preopen",
    "RunResult",
    "RunSpec",
    "Stdio",
    "StdioKind",
    "run",
]
