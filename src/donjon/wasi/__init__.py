"""donjon.wasi: a WASI preview1 host on wasmtime, with sandboxed files and sockets.

``run(spec)`` is the entry point; :mod:`donjon.wasi.api` describes a run. The
names below are imported on first use, so that importing one submodule (as
``donjon run-wasm`` does) does not import them all.
"""

from __future__ import annotations

TYPE_CHECKING = False  # ``typing`` costs milliseconds to import; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any

    from donjon.wasi.api import Limits as Limits
    from donjon.wasi.api import Preopen as Preopen
    from donjon.wasi.api import RunResult as RunResult
    from donjon.wasi.api import RunSpec as RunSpec
    from donjon.wasi.api import Stdio as Stdio
    from donjon.wasi.api import StdioKind as StdioKind
    from donjon.wasi.errors import EXIT_MEMORY as EXIT_MEMORY
    from donjon.wasi.errors import EXIT_TIMEOUT as EXIT_TIMEOUT
    from donjon.wasi.errors import EXIT_TRAP as EXIT_TRAP
    from donjon.wasi.errors import ModuleError as ModuleError
    from donjon.wasi.runner import run as run

#: public name -> the submodule that defines it
_HOMES = {
    "EXIT_MEMORY": "errors",
    "EXIT_TIMEOUT": "errors",
    "EXIT_TRAP": "errors",
    "Limits": "api",
    "ModuleError": "errors",
    "Preopen": "api",
    "RunResult": "api",
    "RunSpec": "api",
    "Stdio": "api",
    "StdioKind": "api",
    "run": "runner",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{home}"), name)
