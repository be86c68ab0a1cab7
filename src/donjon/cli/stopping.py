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

import contextlib
import os
import signal
import threading
from collections.abc import Callable

#: The shell's convention: 128 + the signal number.
SIGNAL_EXIT_BASE = 128


def stop_promptly_on_sigterm(on_stop: Callable[[], None] | None = None) -> bool:
    """Install the watcher (call before starting other threads); False where unsupported.

    ``on_stop`` runs in the watcher thread before the process ends (keep it short)."""
    if not hasattr(signal, "pthread_sigmask") or not hasattr(signal, "sigwait"):
        return False  # not a POSIX host: the default action stays
    if threading.current_thread() is not threading.main_thread():
        return False
    wanted = {signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)

    def wait() -> None:
        signum = signal.sigwait(wanted)
        code = SIGNAL_EXIT_BASE + signum
        name = signal.Signals(signum).name
        if on_stop is not None:
            with contextlib.suppress(Exception):  # the process ends either way
                on_stop()
        # os.write, not print: another thread may hold sys.stderr's lock.
        os.write(2, f"donjon: stopped by {name} (exit status {code})\n".encode())
        os._exit(code)

    threading.Thread(target=wait, name="donjon-sigterm", daemon=True).start()
    return True
