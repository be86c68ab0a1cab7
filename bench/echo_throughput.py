"""Echo throughput through a Keep, plain and TLS, against the wasmtime CLI and raw Python ssl.

The same guest (tests/keep/programs/echo.c, a poll() echo server) runs:

* in a Keep (``donjon run``), with ``prot = "tcp"`` and with ``prot = "tls"``;
* under the wasmtime CLI (``wasmtime run -S tcplisten=ADDR``), plain only: it has no TLS.
  wasmtime 49 refuses ``tcplisten`` for preview1 modules; where it does, the plain
  rows use a raw Python echo server instead, and the table says so.

TLS numbers are set against a raw Python ``ssl`` echo server (a thread per
connection, TLS 1.3, the same kind of P-256 key), which is what "Python's TLS
cost" looks like with nothing of Donjon's around it. Every server is a separate
process; the clients are the same Python threads for every server. Each row
runs the Donjon server and its baseline alternately, ``--repeat`` times, and
keeps the median.

    python bench/echo_throughput.py                 # 2 s per measurement
    python bench/echo_throughput.py --seconds 1 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import (
    REPO,
    Row,
    free_port,
    report,
    serving,
    stop,
    unverified_client_context,
    wait_port,
    write_self_signed,
)

PROGRAM = REPO / "tests" / "keep" / "programs" / "echo.c"
CHUNK = 16 * 1024
STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'

PY_SERVER = r"""
import socket, ssl, sys, threading
tls = len(sys.argv) > 2
nodelay = sys.argv[1] == "nodelay"
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.num_tickets = int(sys.argv[4])
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv = socket.create_server(("127.0.0.1", 0), backlog=128)
print(srv.getsockname()[1], flush=True)
def serve(raw):
    if nodelay:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        with (ctx.wrap_socket(raw, server_side=True) if tls else raw) as conn:
            while data := conn.recv(65536):
                conn.sendall(data)
    except OSError:
        pass
while True:
    raw, _ = srv.accept()
    threading.Thread(target=serve, args=(raw,), daemon=True).start()
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--repeat", type=int, default=1, help="runs per server (median kept)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args()


# Servers ---------------------------------------------------------------------------------------


@contextmanager
def donjon_server(wasm: Path, prot: str, tmp: Path) -> Iterator[int]:
    pkg = tmp / f"echo-{prot}"
    pkg.mkdir(exist_ok=True)
    shutil.copyfile(wasm, pkg / "main.wasm")
    (pkg / "Donjon.toml").write_text(
        f'{STDIO}[[files]]\nkind = "listen"\nname = "echo"\naddr = "127.0.0.1"\n'
        f'port = 0\nprot = "{prot}"\n'
    )
    env = {**os.environ, "DONJON_PLATFORM": "nil"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon.cli.main", "run", str(pkg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    port = None
    for raw in proc.stderr:
        if match := re.search(rb"listening on 127\.0\.0\.1:(\d+)", raw):
            port = int(match.group(1))
            break
    if port is None:
        stop(proc)
        raise SystemExit("donjon run did not start listening")
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()  # type: ignore[union-attr]
    with serving(proc, port):
        yield port


def wasmtime_listen_cmd(wasm: Path, port: int) -> list[str] | None:
    """The wasmtime CLI command that serves ``wasm`` on ``port``, if this wasmtime can.

    ``-S tcplisten`` belongs to wasmtime's legacy preview1 implementation; wasmtime 49
    refuses it ("components do not support --tcplisten"), so this returns ``None`` there.
    """
    from donjon import toolchain

    cmd = [str(toolchain.wasmtime_cli()), "run", "-S", f"tcplisten=127.0.0.1:{port}", str(wasm)]
    probe = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, probe, timeout=10)
    except SystemExit:
        return None
    finally:
        stop(probe)
    return cmd


@contextmanager
def wasmtime_server(wasm: Path) -> Iterator[int | None]:
    port = free_port()
    cmd = wasmtime_listen_cmd(wasm, port)
    if cmd is None:
        yield None
        return
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with serving(proc, port):
        yield port


@contextmanager
def python_server(
    tmp: Path, tls: bool, *, tickets: int = 0, nodelay: bool = False
) -> Iterator[int]:
    """A raw Python echo server (thread per connection), plain or TLS 1.3.

    ``tickets``: TLS 1.3 session tickets sent after each handshake (0, like the Keep).
    ``nodelay``: TCP_NODELAY on accepted sockets (the Keep sets it on TLS connections).
    """
    extra: list[str] = []
    if tls:
        cert, key = write_self_signed(tmp, cert_name="baseline.pem", key_name="baseline.key")
        extra = [str(cert), str(key), str(tickets)]
    argv = [sys.executable, "-c", PY_SERVER, "nodelay" if nodelay else "nagle", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    with serving(proc, port):
        yield port


# Clients ---------------------------------------------------------------------------------------


def _connect(port: int, tls: bool) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return unverified_client_context().wrap_socket(raw) if tls else raw


def throughput(port: int, tls: bool, clients: int, seconds: float) -> float:
    """MiB/s echoed, summed over ``clients`` concurrent connections."""
    totals = [0] * clients
    start_gate = threading.Barrier(clients + 1)
    stop_at: list[float] = [0.0]
    payload = os.urandom(CHUNK)

    def one(i: int) -> None:
        with _connect(port, tls) as conn:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            start_gate.wait()
            while time.monotonic() < stop_at[0]:
                conn.sendall(payload)
                got = 0
                while got < CHUNK:
                    n = conn.recv_into(view[got:])
                    if n == 0:
                        raise SystemExit("server closed the connection")
                    got += n
                totals[i] += CHUNK

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds + 3600
    start_gate.wait()
    begin = time.monotonic()
    stop_at[0] = begin + seconds
    for t in threads:
        t.join()
    elapsed = time.monotonic() - begin
    return sum(totals) / elapsed / (1 << 20)


def connection_rate(port: int, seconds: float) -> float:
    """New TLS connections per second: connect, handshake, 1-byte echo, close."""
    ctx = unverified_client_context()
    count = 0
    deadline = time.monotonic() + seconds
    begin = time.monotonic()
    while time.monotonic() < deadline:
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw) as conn:
            conn.sendall(b"x")
            if conn.recv(1) != b"x":
                raise SystemExit("bad echo")
        count += 1
    return count / (time.monotonic() - begin)


# Main ------------------------------------------------------------------------------------------


def median_pair(
    repeat: int, ours: Callable[[], float], theirs: Callable[[], float]
) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeat):
        a.append(ours())
        b.append(theirs())
    return statistics.median(a), statistics.median(b)


def main() -> None:
    args = parse_args()
    from donjon import toolchain

    wasm = toolchain.build(PROGRAM)
    secs, rep = args.seconds, args.repeat
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with (
            donjon_server(wasm, "tcp", tmp) as d_tcp,
            donjon_server(wasm, "tls", tmp) as d_tls,
            wasmtime_server(wasm) as w_tcp,
            python_server(tmp, tls=False) as p_tcp,
            python_server(tmp, tls=True) as p_tls,
        ):
            plain_base, plain_name = (w_tcp, "wasmtime CLI") if w_tcp else (p_tcp, "Python")
            if w_tcp is None:
                notes.append(
                    "the wasmtime CLI here cannot listen for a preview1 module (-S tcplisten "
                    "is legacy-only), so plain rows compare with a raw Python echo server"
                )
            for clients in (1, 16):
                ours, theirs = median_pair(
                    rep,
                    lambda c=clients: throughput(d_tcp, False, c, secs),
                    lambda c=clients: throughput(plain_base, False, c, secs),
                )
                rows.append(
                    Row(
                        f"echo plain, {clients} client(s) [vs {plain_name}]",
                        "MiB/s", ours, theirs, "ratio >= 0.50", ours >= 0.5 * theirs,
                    )
                )  # fmt: skip
            tls_rows: dict[int, float] = {}
            for clients in (1, 16):
                ours, theirs = median_pair(
                    rep,
                    lambda c=clients: throughput(d_tls, True, c, secs),
                    lambda c=clients: throughput(p_tls, True, c, secs),
                )
                tls_rows[clients] = ours
                rows.append(
                    Row(
                        f"echo TLS 1.3, {clients} client(s) [vs Python ssl]",
                        "MiB/s", ours, theirs, "ratio >= 0.50", ours >= 0.5 * theirs,
                    )
                )  # fmt: skip
            ours, theirs = median_pair(
                rep, lambda: connection_rate(d_tls, secs), lambda: connection_rate(p_tls, secs)
            )
            rows.append(
                Row(
                    "new TLS connections [vs Python ssl]",
                    "conn/s", ours, theirs, "ratio >= 0.50", ours >= 0.5 * theirs,
                )
            )  # fmt: skip
            for clients in (1, 16):
                plain = rows[0 if clients == 1 else 1].donjon
                notes.append(
                    f"Donjon TLS / Donjon plain, {clients} client(s): "
                    f"{tls_rows[clients] / plain:.2f}"
                )
    notes.append(f"{secs:g} s per measurement, median of {rep}; clients are Python threads")
    report(
        "echo_throughput: Keep sockets, plain and TLS (higher is better)", rows, args.json, notes
    )


if __name__ == "__main__":
    main()
