"""Stop a running workload promptly on SIGTERM, and say so in one line.

A Python signal handler runs only when the main thread is back in the
interpreter, which a guest in a compute loop inside wasmtime may never be. So
SIGTERM is blocked in every thread and one small thread waits for it with
``sigwait``: it writes ``donjon: stopped by SIGTERM (exit status 143)`` and ends
the process at once. Nothing is half-written: every file Donjon writes goes
through an atomic rename, and the kernel closes the sockets. What only the
process would clean up (the temporary directory of a package pulled from a
registry) is handed in as ``on_stop`` and removed first.
"""

from __future__ import annotations

# The C modules under ``signal`` and ``threading``: ``run-wasm``'s lean start
# (``donjon.cli.entry``) installs the watcher too, and the wrappers' imports
# (enum, contextlib, weakref sets) cost it milliseconds.
import _signal  # type: ignore[import-not-found]  # typeshed has stubs for signal only
import _thread
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

#: The shell's convention: 128 + the signal number.
SIGNAL_EXIT_BASE = 128


def _in_main_thread() -> bool:
    threading = sys.modules.get("threading")  # not loaded: no thread was started through it
    return threading is None or threading.current_thread() is threading.main_thread()


def stop_promptly_on_sigterm(on_stop: Callable[[], None] | None = None) -> bool:
    """Install the watcher (call before starting other threads); False where unsupported.

    ``on_stop`` runs in the watcher thread before the process ends (keep it short)."""
    if not hasattr(_signal, "pthread_sigmask") or not hasattr(_signal, "sigwait"):
        return False  # not a POSIX host: the default action stays
    if not _in_main_thread():
        return False
    wanted = {_signal.SIGTERM}
    _signal.pthread_sigmask(_signal.SIG_BLOCK, wanted)

    def wait() -> None:
        signum = _signal.sigwait(wanted)
        code = SIGNAL_EXIT_BASE + signum
        if on_stop is not None:
            try:  # noqa: SIM105 - contextlib is one of the imports avoided here
                on_stop()
            except Exception:
                pass  # the process ends either way
        # os.write, not print: another thread may hold sys.stderr's lock.
        os.write(2, f"donjon: stopped by SIGTERM (exit status {code})\n".encode())
        os._exit(code)

    _thread.start_new_thread(wait, ())
    return True
