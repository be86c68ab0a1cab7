"""Ports and child processes for tests that start real servers."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Callable

from donjon.keep import tls
from donjon.keep.config import Trust
from donjon.keep.identity import Identity


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


def hello_as(port: int, client: Identity, *, timeout: float = 5) -> bytes:
    """Connect to a Keep's TLS listener as ``client`` (its certificate presented), send
    ``hello`` and return what comes back: ``b""`` when the Keep closed the connection."""
    ctx = tls.client_context(
        trust=Trust.STEWARD,
        server_name="localhost",
        identity=client,
        present_certificate=True,
        check_name=False,
    ).context
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        conn.sendall(b"hello")
        try:
            return conn.recv(16)
        except (ConnectionResetError, ssl.SSLError):
            return b""
