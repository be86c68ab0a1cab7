"""Raw sock_* calls and poll_oneoff on real sockets (tests/programs/c/sock_calls.c).

The guest checks its own results against spec constants; this side plays the
client, step by step, when the guest prints ``sync <n>``. There is no wasmtime
reference run: wasmtime 49's CLI cannot give a preview1 module a listener (see
test_wasmtime_cli_cannot_preopen_sockets, which notices the day it can).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from tls_listener import TlsListener
from wasi_harness import PROGRAMS, build, require_donjon

from donjon import toolchain
from support.pki import client_context, server_context, write_self_signed


def client_script(port: int, out: IO[bytes], seen: list[str], wrap: Wrap) -> None:
    """The client's half of sock_calls.c, step by step."""
    wait_sync(out, 1, seen)
    with wrap(socket.create_connection(("127.0.0.1", port), timeout=20)) as c:
        c.sendall(b"hello world")
        wait_sync(out, 2, seen)
        assert c.recv(4) == b"pong"
        c.sendall(b"x")
        wait_sync(out, 3, seen)
        assert c.recv(10) == b"", "no EOF after the guest's sock_shutdown(WR)"
        c.sendall(b"after")
    wait_sync(out, 4, seen)
    with wrap(socket.create_connection(("127.0.0.1", port), timeout=20)) as d:
        wait_sync(out, 5, seen)
        d.sendall(b"z")
        assert recv_all(d) == b"abcd\n" + b"q" * 2000


def check_transcript(text: str) -> None:
    failures = [line for line in text.splitlines() if line.startswith(("FAIL", "unexpected"))]
    assert not failures, failures
    assert text.rstrip().endswith("failures 0"), text[-500:]


def wait_sync(out: IO[bytes], n: int, seen: list[str]) -> None:
    while True:
        line = out.readline().decode()
        if not line:
            raise AssertionError(f"the guest ended before sync {n}: {''.join(seen)}")
        seen.append(line)
        if line == f"sync {n}\n":
            return


Wrap = Callable[[socket.socket], socket.socket]


def recv_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(100):
        data += chunk
    return data


@pytest.mark.slow
def test_sock_calls() -> None:
    wasm = build(PROGRAMS / "c" / "sock_calls.c")
    require_donjon()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # donjon opens it again; a tiny race we accept in a test
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon.cli.main", "run-wasm", "--listen", f"127.0.0.1:{port}",
         "--timeout", "60", str(wasm)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        client_script(port, proc.stdout, seen, lambda sock: sock)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check_transcript("".join(seen) + rest.decode())
    assert proc.returncode == 0, err.decode()


@pytest.mark.slow
def test_sock_calls_over_tls(tmp_path: Path) -> None:
    """The same script with TLS terminated by the host: PEEK, WAITALL, poll and shutdown
    must behave on an ``ssl.SSLSocket`` as on a plain one (decrypted bytes pending in
    OpenSSL count as readable)."""
    wasm = build(PROGRAMS / "c" / "sock_calls.c")
    require_donjon()
    from donjon.wasi.api import Limits, RunResult, RunSpec, Stdio, StdioKind
    from donjon.wasi.runner import run

    cert, key = write_self_signed(tmp_path)
    raw = socket.create_server(("127.0.0.1", 0))
    port = raw.getsockname()[1]
    listener = TlsListener(raw, server_context(cert, key))
    read_fd, write_fd = os.pipe()
    guest_out = os.fdopen(write_fd, "wb", buffering=0)
    spec = RunSpec(
        module=wasm,
        args=["sock_calls.wasm"],
        stdout=Stdio(StdioKind.STREAM, stream=guest_out),
        stderr=Stdio(StdioKind.FILE, path=tmp_path / "stderr"),
        streams=[listener],
        limits=Limits(timeout_s=60, blocking_call_timeout_s=30),
    )
    results: list[RunResult | BaseException] = []

    def serve() -> None:
        try:
            results.append(run(spec))
        except BaseException as exc:  # reported on the test's thread
            results.append(exc)
        finally:
            guest_out.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    ctx = client_context(cert)
    seen: list[str] = []
    with os.fdopen(read_fd, "rb") as out:
        try:
            client_script(
                port, out, seen, lambda s: ctx.wrap_socket(s, server_hostname="localhost")
            )
            server.join(timeout=30)
            rest = out.read().decode()
        finally:
            listener.close()
    assert not server.is_alive()
    check_transcript("".join(seen) + rest)
    assert len(results) == 1 and not isinstance(results[0], BaseException), results
    assert results[0].exit_code == 0, (tmp_path / "stderr").read_text()


def test_wasmtime_cli_cannot_preopen_sockets(tmp_path: Path) -> None:
    """Why the socket tests have no reference run. If this starts failing, add one."""
    try:
        cli = toolchain.wasmtime_cli()
    except toolchain.ToolchainMissing as exc:
        pytest.skip(str(exc))
    wasm = build(PROGRAMS / "c" / "sock_calls.c")
    proc = subprocess.run(
        [str(cli), "run", "-S", "tcplisten=127.0.0.1:0", str(wasm)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert b"tcplisten" in proc.stderr
