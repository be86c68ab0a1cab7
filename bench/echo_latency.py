"""New-connection latency through a Keep: time to the first echoed byte, TLS and plain.

Every sample is one fresh connection: TCP connect, TLS 1.3 handshake (TLS rows),
send one byte, wait for the echo, close. "Time to first byte" runs from the
start of connect to the echoed byte, which is what a client of a Keep waits
for on every new connection; the handshake column alone is also printed.

Clients come in two kinds, because the kind decides the result:

* ``Nagle``: a default socket, as many HTTP clients leave it. A server that has
  nothing to send after the client's TLS Finished (TLS 1.3 without session
  tickets, like the Keep) delays its ACK, and Nagle holds the client's first
  request back until that ACK arrives: ~40 ms on Linux.
* ``NODELAY``: ``TCP_NODELAY`` set, as curl and browsers do.

The same guest as ``echo_throughput.py`` (tests/keep/programs/echo.c) runs in
a Keep (nil platform). Baselines: a raw Python echo server (thread per
connection), and for TLS raw Python ``ssl`` with its default two session
tickets (a typical server); the Python server without tickets is printed as
well. Samples alternate between the servers, so load drift hits all alike.

    python bench/echo_latency.py                  # 200 connections per row
    python bench/echo_latency.py --connections 500 --json
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from common import REPO, Row, report, unverified_client_context
from echo_throughput import donjon_server, python_server

PROGRAM = REPO / "tests" / "keep" / "programs" / "echo.c"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--connections", type=int, default=200, help="new connections per server and client kind"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args()


def one_connection(port: int, ctx: ssl.SSLContext | None, nodelay: bool) -> tuple[float, float]:
    """(connect + handshake, time to first byte) of one new connection, in seconds."""
    start = time.perf_counter()
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    if nodelay:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = ctx.wrap_socket(raw) if ctx is not None else raw
    with conn:
        connected = time.perf_counter()
        conn.sendall(b"x")
        if conn.recv(1) != b"x":
            raise SystemExit("bad echo")
        first = time.perf_counter()
    return connected - start, first - start


def measure(
    ports: dict[str, int], ctx: ssl.SSLContext | None, nodelay: bool, count: int
) -> dict[str, tuple[list[float], list[float]]]:
    """``count`` connections to each server, interleaved; per server (handshakes, TTFBs)."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in ports}
    for port in ports.values():  # warm up: first-connection costs are not the subject
        one_connection(port, ctx, nodelay)
    for _ in range(count):
        for name, port in ports.items():
            hs, ttfb = one_connection(port, ctx, nodelay)
            out[name][0].append(hs)
            out[name][1].append(ttfb)
    return out


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    args = parse_args()
    from donjon import toolchain

    wasm = toolchain.build(PROGRAM)
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with (
            donjon_server(wasm, "tcp", tmp) as d_tcp,
            donjon_server(wasm, "tls", tmp) as d_tls,
            python_server(tmp, tls=False, nodelay=True) as p_tcp,
            python_server(tmp, tls=True, tickets=2, nodelay=True) as p_tls,
            python_server(tmp, tls=True, tickets=0, nodelay=True) as p_tls0,
        ):
            for nodelay in (False, True):
                kind = "NODELAY" if nodelay else "Nagle"
                got = measure(
                    {"keep": d_tls, "python": p_tls, "python0": p_tls0},
                    unverified_client_context(),
                    nodelay,
                    args.connections,
                )
                keep, base, base0 = got["keep"], got["python"], got["python0"]
                ours, theirs = statistics.median(keep[1]), statistics.median(base[1])
                rows.append(
                    Row(
                        f"TLS time to first byte, {kind} client [vs Python ssl]",
                        "ms", ours * 1e3, theirs * 1e3, "ratio <= 2.00", ours <= 2 * theirs,
                    )
                )  # fmt: skip
                notes.append(
                    f"TLS {kind}: handshake median keep {statistics.median(keep[0]) * 1e3:.2f} ms, "
                    f"python {statistics.median(base[0]) * 1e3:.2f} ms; p90 TTFB keep "
                    f"{p90(keep[1]) * 1e3:.2f} ms, python {p90(base[1]) * 1e3:.2f} ms; "
                    f"python without tickets: TTFB median "
                    f"{statistics.median(base0[1]) * 1e3:.2f} ms"
                )
            for nodelay in (False, True):
                kind = "NODELAY" if nodelay else "Nagle"
                got = measure({"keep": d_tcp, "python": p_tcp}, None, nodelay, args.connections)
                ours = statistics.median(got["keep"][1])
                theirs = statistics.median(got["python"][1])
                rows.append(
                    Row(
                        f"plain time to first byte, {kind} client [vs Python]",
                        "ms", ours * 1e3, theirs * 1e3, "ratio <= 2.00", ours <= 2 * theirs,
                    )
                )  # fmt: skip
    notes.append(f"medians of {args.connections} new connections per row (lower is better)")
    report("echo_latency: new connections to a Keep (lower is better)", rows, args.json, notes)


if __name__ == "__main__":
    main()
