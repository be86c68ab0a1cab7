"""The two echo servers (examples/echo-c, examples/echo-rust) under Donjon, plain and TLS.

Clients connect one after another, several at once, pipeline messages, send
large payloads, half-close, and hang up without a word. Every byte must come
back in order. Over TLS the harness terminates TLS outside the guest with
:class:`tls_listener.TlsListener`, so the same guest binaries serve both.

The wasmtime 49 CLI cannot give a preview1 module a listening socket (its
``-S tcplisten`` needs the legacy host that was removed), so there is no
reference run here: the expectations are the echo itself and the byte counts the
server prints, both known from the payloads the test sends.
"""

from __future__ import annotations

import random
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tls_listener import TlsListener
from wasi_harness import REPO, build, require_donjon

from support.net import free_port, wait_port
from support.pki import client_context, server_context, write_self_signed

SERVERS = {
    "c": (REPO / "examples" / "echo-c" / "main.c", "echo-c"),
    "rust": (REPO / "examples" / "echo-rust" / "main.rs", "echo-rust"),
}
CLIENT_TIMEOUT = 20.0
SEQUENTIAL_SIZES = [1, 7, 1000, 65536, 200_000]
CONCURRENT = 8
ROUNDS = 20

Connect = Callable[[], socket.socket]


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        if not chunk:
            raise AssertionError(f"connection closed after {got} of {size} echoed bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def round_trip(sock: socket.socket, payload: bytes, chunk: int = 16384) -> None:
    """Send in chunks and read each back before the next, so neither side's buffers fill."""
    for start in range(0, len(payload), chunk):
        piece = payload[start : start + chunk]
        sock.sendall(piece)
        assert recv_exactly(sock, len(piece)) == piece


def exercise(connect: Connect) -> tuple[int, int]:
    """Drive the server; return (connections made, bytes echoed) as the test planned them."""
    rng = random.Random(1234)
    connections = echoed = 0
    # one after another, growing payloads
    for size in SEQUENTIAL_SIZES:
        payload = rng.randbytes(size)
        with connect() as sock:
            round_trip(sock, payload)
        connections += 1
        echoed += size
    # pipelined: three messages out before reading any back
    with connect() as sock:
        messages = [b"first\n", b"second\n", b"third\n"]
        for m in messages:
            sock.sendall(m)
        expected = b"".join(messages)
        assert recv_exactly(sock, len(expected)) == expected
    connections += 1
    echoed += len(expected)
    # many at once, all open together
    barrier = threading.Barrier(CONCURRENT)

    def client(index: int) -> int:
        local = random.Random(index)
        total = 0
        with connect() as sock:
            barrier.wait(timeout=CLIENT_TIMEOUT)
            for _ in range(ROUNDS):
                payload = local.randbytes(local.randint(1, 3000))
                round_trip(sock, payload)
                total += len(payload)
            barrier.wait(timeout=CLIENT_TIMEOUT)  # nobody closes before everyone is done
        return total

    with ThreadPoolExecutor(CONCURRENT) as pool:
        echoed += sum(pool.map(client, range(CONCURRENT)))
    connections += CONCURRENT
    # half-close: the echo still arrives, then EOF
    with connect() as sock:
        sock.sendall(b"bye")
        if isinstance(sock, ssl.SSLSocket):
            assert recv_exactly(sock, 3) == b"bye"
        else:
            sock.shutdown(socket.SHUT_WR)
            assert recv_exactly(sock, 3) == b"bye"
            assert sock.recv(10) == b"", "no EOF after the peer's half-close"
    connections += 1
    echoed += 3
    # hang up without sending anything
    with connect():
        pass
    connections += 1
    return connections, echoed


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    stderr = proc.stderr
    wait_port(port, proc, timeout=30, why=lambda: repr(stderr.read().decode()))


@pytest.mark.slow
@pytest.mark.parametrize("lang", sorted(SERVERS))
def test_echo_plain_tcp(lang: str) -> None:
    src, name = SERVERS[lang]
    wasm = build(src)
    require_donjon()
    port = free_port()
    planned = 1 + len(SEQUENTIAL_SIZES) + 1 + CONCURRENT + 2  # the probe connection counts
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "donjon.cli.main", "run-wasm",
            "--listen", f"127.0.0.1:{port}", "--timeout", "120",
            str(wasm), str(planned),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_listening(port, proc)

        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)

        connections, echoed = exercise(connect)
        assert 1 + connections == planned
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode() == f"{name}: {planned} connections, {echoed} bytes\n"


@pytest.mark.slow
@pytest.mark.parametrize("lang", sorted(SERVERS))
def test_echo_tls(lang: str, tmp_path: Path) -> None:
    src, name = SERVERS[lang]
    wasm = build(src)
    require_donjon()
    from donjon.wasi.api import Limits, RunResult, RunSpec, Stdio, StdioKind
    from donjon.wasi.runner import run

    cert, key = write_self_signed(tmp_path)
    raw = socket.create_server(("127.0.0.1", 0))
    port = raw.getsockname()[1]
    listener = TlsListener(raw, server_context(cert, key))
    planned = len(SEQUENTIAL_SIZES) + 1 + CONCURRENT + 2
    out_path = tmp_path / "stdout"
    spec = RunSpec(
        module=wasm,
        args=["main.wasm", str(planned)],
        stdout=Stdio(StdioKind.FILE, path=out_path),
        stderr=Stdio(StdioKind.FILE, path=tmp_path / "stderr"),
        streams=[listener],
        limits=Limits(timeout_s=120, blocking_call_timeout_s=60),
    )
    results: list[RunResult | BaseException] = []

    def serve() -> None:
        try:
            results.append(run(spec))
        except BaseException as exc:  # reported below, on the test's thread
            results.append(exc)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    ctx = client_context(cert)

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        return ctx.wrap_socket(sock, server_hostname="localhost")

    try:
        connections, echoed = exercise(connect)
        assert connections == planned
        server.join(timeout=60)
        assert not server.is_alive(), "the guest did not exit after its last connection"
    finally:
        listener.close()
    assert len(results) == 1 and not isinstance(results[0], BaseException), results
    assert results[0].exit_code == 0, (tmp_path / "stderr").read_text()
    assert out_path.read_text() == f"{name}: {planned} connections, {echoed} bytes\n"
    assert listener.failed_handshakes == 0
