"""examples/http served by Donjon, against the same C program built natively.

The same source, examples/http/main.c, runs:

* natively (``python -m ziglang cc``, the host's target), handed a listening
  socket as fd 3: the baseline, with no WebAssembly and no Keep;
* under ``donjon run-wasm --listen`` (plain TCP, the WASI host alone);
* in a Keep (``donjon run``) with ``prot = "tcp"`` and with ``prot = "tls"``.

Clients are Python threads on raw sockets, each sending ``GET /health`` and
reading the answer, for ``--seconds`` per measurement; keep-alive rows reuse
one connection per thread, "new connection" rows open one per request. The
native server and the Donjon one run alternately, ``--repeat`` times, and the
median is kept. There is no goal column: the numbers are there to be
compared, not passed. The clients share the machine's cores with the server,
so they are part of what is measured. The wasmtime CLI cannot be the
baseline: its 49.x release has no ``-S tcplisten`` for preview1 modules.

    python bench/examples_http.py
    python bench/examples_http.py --seconds 1 --repeat 3 --clients 4
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from common import REPO, Row, free_port, report, serving

SOURCE = REPO / "examples" / "http" / "main.c"
REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"
CLOSE_REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
STDIO = '[[files]]\nkind = "null"\n[[files]]\nkind = "null"\n[[files]]\nkind = "stderr"\n'
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def build_native(work: Path) -> Path:
    out = work / "http-native"
    subprocess.run(
        [sys.executable, "-m", "ziglang", "cc", "-O2", "-o", str(out), str(SOURCE)], check=True
    )
    return out


def build_wasm() -> Path:
    from donjon import toolchain

    return toolchain.build(SOURCE)


Served = tuple[int, ssl.SSLContext | None]


@contextmanager
def native_server(binary: Path) -> Iterator[Served]:
    sock = socket.create_server(("127.0.0.1", 0), backlog=128)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    # The program looks for its listener at fd 3: the shell puts it there.
    proc = subprocess.Popen(
        ["sh", "-c", f'exec "$0" 3<&{fd}', str(binary)],
        stdout=subprocess.DEVNULL,
        pass_fds=(fd,),
    )
    sock.close()
    with serving(proc, port):
        yield port, None


@contextmanager
def run_wasm_server(wasm: Path) -> Iterator[Served]:
    port = free_port()
    cmd = [sys.executable, "-m", "donjon.cli.main", "run-wasm"]
    proc = subprocess.Popen(
        [*cmd, "--listen", f"127.0.0.1:{port}", str(wasm)], stdout=subprocess.DEVNULL
    )
    with serving(proc, port):
        yield port, None


@contextmanager
def keep_server(wasm: Path, prot: str, work: Path) -> Iterator[Served]:
    pkg = Path(tempfile.mkdtemp(dir=work))
    shutil.copyfile(wasm, pkg / "main.wasm")
    (pkg / "Donjon.toml").write_text(
        STDIO + '[[files]]\nkind = "listen"\nname = "http"\naddr = "127.0.0.1"\nport = 0\n'
        f'prot = "{prot}"\n'
    )
    cert = pkg / "cert.pem"
    env = dict(os.environ, DONJON_PLATFORM="nil", DONJON_STATE_DIR=str(work / "state"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "donjon.cli.main",
            "run",
            str(pkg),
            "--export-cert",
            str(cert),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    try:
        port = 0
        for line in proc.stderr:  # not -q: it would hide the "listening on" line
            if match := LISTENING.search(line):
                port = int(match.group(1))
                break
        if not port:
            raise SystemExit("the Keep did not start listening")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        context = None
        if prot == "tls":
            context = ssl.create_default_context(cafile=str(cert))
        yield port, context
    finally:
        proc.kill()
        proc.wait()


def answer(conn: socket.socket) -> None:
    """Read one /health response (headers plus the 3-byte body)."""
    data = b""
    while not data.endswith(b"\r\n\r\nok\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise SystemExit("the server closed the connection")
        data += chunk


def connect(port: int, context: ssl.SSLContext | None) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context.wrap_socket(raw, server_hostname="localhost") if context else raw


def load(
    port: int, context: ssl.SSLContext | None, clients: int, seconds: float, keepalive: bool
) -> float:
    """Requests per second, over ``clients`` threads."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        if keepalive:
            with connect(port, context) as conn:
                while time.monotonic() < stop:
                    conn.sendall(REQUEST)
                    answer(conn)
                    counts[index] += 1
        else:
            while time.monotonic() < stop:
                with connect(port, context) as conn:
                    conn.sendall(CLOSE_REQUEST)
                    answer(conn)
                counts[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


Server = Callable[[], AbstractContextManager[Served]]


def measure(server: Server, clients: int, seconds: float, keepalive: bool) -> float:
    with server() as (port, context):
        load(port, context, 1, 0.2, keepalive)  # warm up: compile caches, first handshake
        return load(port, context, clients, seconds, keepalive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (median is kept)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        native, wasm = build_native(work), build_wasm()
        servers: dict[str, Server] = {
            "native": lambda: native_server(native),
            "run-wasm": lambda: run_wasm_server(wasm),
            "keep-tcp": lambda: keep_server(wasm, "tcp", work),
            "keep-tls": lambda: keep_server(wasm, "tls", work),
        }
        cases = [
            # metric, donjon server, baseline server, keep-alive
            ("keep-alive, WASI host alone", "run-wasm", "native", True),
            ("keep-alive, in a Keep, TCP", "keep-tcp", "native", True),
            ("keep-alive, in a Keep, TLS", "keep-tls", "keep-tcp", True),
            ("new connection per request, Keep TLS", "keep-tls", "keep-tcp", False),
        ]
        rows = []
        notes = []
        for metric, ours, theirs, keepalive in cases:
            mine, base = [], []
            for _ in range(args.repeat):
                mine.append(measure(servers[ours], args.clients, args.seconds, keepalive))
                base.append(measure(servers[theirs], args.clients, args.seconds, keepalive))
            donjon, baseline = statistics.median(mine), statistics.median(base)
            rows.append(
                Row(
                    f"{metric} ({args.clients} clients) vs {theirs}",
                    "req/s",
                    donjon,
                    baseline,
                )
            )
            notes.append(
                f"{metric}: {ours} "
                + " ".join(f"{v:,.0f}" for v in mine)
                + f"; {theirs} "
                + " ".join(f"{v:,.0f}" for v in base)
            )
    report(
        "examples_http: GET /health, requests per second (higher is better)", rows, args.json, notes
    )


if __name__ == "__main__":
    main()
