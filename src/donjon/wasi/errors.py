"""Exceptions inside the WASI host, and the user-facing errors ``run()`` raises."""

from __future__ import annotations

from donjon.errors import DonjonError

#: Exit codes of ``donjon run-wasm`` that are not the guest's own.
EXIT_TRAP = 134  # 128 + SIGABRT, as wasmtime
EXIT_TIMEOUT = 124  # as coreutils timeout(1)
EXIT_MEMORY = 137  # memory limit reached (128 + SIGKILL, as an OOM kill)
EXIT_HOST_ERROR = 1


class WasiError(Exception):
    """A host function fails with this WASI errno (returned to the guest, not a trap)."""

    __slots__ = ("errno",)

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


class ProcExit(BaseException):
    """``proc_exit`` was called: unwinds the guest with its exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class DeadlineExceeded(BaseException):
    """The run's wall-clock deadline passed while the guest was blocked in a host call."""


class ModuleError(DonjonError):
    """The file is not a valid WebAssembly module, or not a WASI command."""


class GuestTrap(DonjonError):
    """The guest trapped; the message names the trap."""

    exit_code = EXIT_TRAP


class RunTimeout(DonjonError):
    """The run exceeded its wall-clock limit."""

    exit_code = EXIT_TIMEOUT


class MemoryLimitExceeded(DonjonError):
    """The guest failed after its linear memory reached the configured limit."""

    exit_code = EXIT_MEMORY
