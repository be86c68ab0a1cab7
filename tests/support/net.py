"""Ports and child processes for tests that start real servers."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for servers that cannot report theirs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(
    port: int,
    proc: subprocess.Popen[bytes] | subprocess.Popen[str],
    *,
    timeout: float = 60,
    why: Callable[[], str] = str,
) -> None:
    """Wait until 127.0.0.1:``port`` accepts a connection from ``proc``'s server.

    If ``proc`` exits or time runs out, it is killed and the AssertionError ends
    with ``why()`` (its log, its stderr), read after the kill.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}: {why()}")


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process has not gone within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
