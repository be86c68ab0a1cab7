"""Raw sock_* calls and poll_oneoff on real sockets (tests/programs/c/sock_calls.c).

The guest checks its own results against spec constants; this side plays the
client, step by step, when the guest prints ``sync <n>``. There is no wasmtime
reference run: wasmtime 49's CLI cannot give a preview1 module a listener (see
test_wasmtime_cli_cannot_preopen_sockets, which notices the day it can).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest
from wasi_harness import PROGRAMS, build, require_donjon

from donjon import toolchain


def wait_sync(out: IO[bytes], n: int, seen: list[str]) -> None:
    while True:
        line = out.readline().decode()
        if not line:
            raise AssertionError(f"the guest ended before sync {n}: {''.join(seen)}")
        seen.append(line)
        if line == f"sync {n}\n":
            return


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
        wait_sync(proc.stdout, 1, seen)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
            c.sendall(b"hello world")
            wait_sync(proc.stdout, 2, seen)
            assert c.recv(4) == b"pong"
            c.sendall(b"x")
            wait_sync(proc.stdout, 3, seen)
            assert c.recv(10) == b"", "no EOF after the guest's sock_shutdown(WR)"
            c.sendall(b"after")
        wait_sync(proc.stdout, 4, seen)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as d:
            wait_sync(proc.stdout, 5, seen)
            d.sendall(b"z")
            assert recv_all(d) == b"abcd\n"
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(seen) + rest.decode()
    failures = [line for line in text.splitlines() if line.startswith("FAIL")]
    assert not failures, failures
    assert proc.returncode == 0, err.decode()
    assert text.rstrip().endswith("failures 0")


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
