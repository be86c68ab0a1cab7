"""examples/http: a Keep serves HTTP/1.1 over TLS for a workload that speaks plain HTTP.

The server runs once per transport for the whole module: under ``donjon run``
with the example's own Enarx.toml (moved to 127.0.0.1 and a free port) with
TLS, the same with ``prot = "tcp"``, and under ``donjon run-wasm --listen``.
The wasmtime CLI cannot be the reference here: its 49.x release has dropped
``-S tcplisten`` for preview1 modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from example_helpers import EXAMPLES, Conn, RunWasmServer, local_listener, make_package

from support.keepproc import KeepProcess
from support.net import free_port

PAGE_TITLE = b"<h1>Hello from a Donjon Keep</h1>"


@dataclass
class Server:
    port: int
    cafile: Path | None  # None: plain TCP
    log: list[str]  # the workload's stdout

    def connect(self) -> Conn:
        return Conn(self.port, self.cafile)


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory,
    example_wasm: Callable[[str], Path],
    servers: Callable[..., KeepProcess],
) -> Server:
    root = tmp_path_factory.mktemp("http-tls")
    config = local_listener((EXAMPLES / "http" / "Enarx.toml").read_text())
    assert 'prot = "tls"' in config
    pkg = make_package(root, "http", example_wasm("http"), config)
    keep = servers(pkg, "--export-cert", str(root / "http.pem"))
    port = keep.port()
    keep.wait_for_stdout("http: serving on fd 3")
    return Server(port, root / "http.pem", keep.out)


@pytest.fixture(scope="module")
def tcp_server(
    tmp_path_factory: pytest.TempPathFactory,
    example_wasm: Callable[[str], Path],
    servers: Callable[..., KeepProcess],
) -> Server:
    root = tmp_path_factory.mktemp("http-tcp")
    config = local_listener((EXAMPLES / "http" / "Enarx.toml").read_text(), prot="tcp")
    keep = servers(make_package(root, "http", example_wasm("http"), config))
    port = keep.port()
    keep.wait_for_stdout("http: serving on fd 3")
    return Server(port, None, keep.out)


@pytest.fixture(scope="module")
def run_wasm_server(
    example_wasm: Callable[[str], Path], donjon_env: dict[str, str]
) -> Iterator[Server]:
    port = free_port()
    server = RunWasmServer(example_wasm("http"), port, donjon_env, "http: serving on fd 3")
    yield Server(port, None, server.out)
    server.stop()


@pytest.fixture(params=["tls", "tcp", "run-wasm"])
def any_server(request: pytest.FixtureRequest) -> Server:
    name = {"tls": "tls_server", "tcp": "tcp_server", "run-wasm": "run_wasm_server"}
    server: Server = request.getfixturevalue(name[request.param])
    return server


def get(path: str, extra: str = "", method: str = "GET", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: localhost\r\n{extra}\r\n".encode()


def test_page_health_and_404_on_every_transport(any_server: Server) -> None:
    conn = any_server.connect()
    try:
        conn.send(get("/"))
        status, headers, body = conn.response()
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert headers["connection"] == "keep-alive"
        assert PAGE_TITLE in body and body.startswith(b"<!DOCTYPE html>")
        conn.send(get("/health"))
        assert conn.response() == (200, conn_headers(conn, 3), b"ok\n")
        conn.send(get("/nope"))
        status, _, body = conn.response()
        assert (status, body) == (404, b"404 Not Found\n")
        conn.send(get("/health?from=test"))  # a query does not change the route
        assert conn.response()[2] == b"ok\n"
    finally:
        conn.close()


def conn_headers(conn: Conn, length: int) -> dict[str, str]:
    return {
        "server": "donjon-example-http",
        "content-type": "text/plain; charset=utf-8",
        "content-length": str(length),
        "cache-control": "no-store",
        "connection": "keep-alive",
    }


def test_keep_alive_serves_many_requests_on_one_connection(tls_server: Server) -> None:
    first_line = len(tls_server.log)  # the server is shared by this module's tests
    conn = tls_server.connect()
    try:
        for _ in range(5):
            conn.send(get("/index.html"))
            status, _, body = conn.response()
            assert status == 200 and PAGE_TITLE in body
    finally:
        conn.close()

    def served() -> list[str]:
        new_lines = tls_server.log[first_line:]
        return [line for line in new_lines if line.endswith(" GET /index.html -> 200\n")]

    # The workload logs after it answers, and a reader thread collects the lines: wait for them.
    deadline = time.monotonic() + 10
    while len(served()) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(served()) == 5
    assert len({line.split()[0] for line in served()}) == 1  # one client number: one connection


def test_pipelined_requests_are_answered_in_order(tls_server: Server) -> None:
    conn = tls_server.connect()
    try:
        conn.send(get("/health") + get("/missing") + get("/"))
        assert conn.response()[0] == 200
        assert conn.response()[0] == 404
        status, _, body = conn.response()
        assert status == 200 and PAGE_TITLE in body
    finally:
        conn.close()


def test_deep_pipelining_gets_every_response_whole(tls_server: Server) -> None:
    # 300 requests at once: far more responses than the server's 16 KiB output buffer.
    conn = tls_server.connect()
    try:
        conn.send(b"".join(get("/" if i % 2 else "/health") for i in range(300)))
        for i in range(300):
            status, _, body = conn.response()
            assert status == 200
            assert (PAGE_TITLE in body) if i % 2 else (body == b"ok\n")
    finally:
        conn.close()


def test_a_request_that_arrives_in_pieces(tls_server: Server) -> None:
    request = get("/health")
    conn = tls_server.connect()
    try:
        for start in range(0, len(request), 7):
            conn.send(request[start : start + 7])
            time.sleep(0.01)  # separate TLS records, separate reads in the guest
        status, _, body = conn.response()
        assert (status, body) == (200, b"ok\n")
    finally:
        conn.close()


def test_a_silent_client_does_not_block_the_others(tls_server: Server) -> None:
    silent = tls_server.connect()
    half = tls_server.connect()
    try:
        half.send(b"GET / HTTP/1.1\r\nHo")  # and then nothing, for now
        others = [tls_server.connect() for _ in range(4)]
        for conn in others:
            conn.send(get("/health"))
        for conn in others:
            assert conn.response()[0] == 200
            conn.close()
        half.send(b"st: localhost\r\n\r\n")
        assert half.response()[0] == 200
    finally:
        silent.close()
        half.close()


def test_connection_close_and_http10_end_the_connection(tls_server: Server) -> None:
    for request in (get("/", "Connection: close\r\n"), get("/", version="1.0")):
        conn = tls_server.connect()
        try:
            conn.send(request)
            status, headers, _ = conn.response()
            assert (status, headers["connection"]) == (200, "close")
            assert conn.closed_by_peer()
        finally:
            conn.close()


def test_head_has_the_get_headers_and_no_body(tls_server: Server) -> None:
    conn = tls_server.connect()
    try:
        conn.send(get("/"))
        _, get_headers, body = conn.response()
        conn.send(get("/", method="HEAD"))
        status, head_headers, _ = conn.response(head_only=True)
        assert status == 200
        assert head_headers == get_headers
        assert int(head_headers["content-length"]) == len(body)
        conn.send(get("/health"))  # nothing after the HEAD headers was a body
        assert conn.response()[2] == b"ok\n"
    finally:
        conn.close()


def test_other_methods_get_405_and_their_body_is_skipped(tls_server: Server) -> None:
    conn = tls_server.connect()
    try:
        body = b"GET /trap HTTP/1.1\r\n\r\n"  # must be read as a body, not a request
        conn.send(get("/", f"Content-Length: {len(body)}\r\n", method="POST") + body)
        assert conn.response()[:1] == (405,)
        conn.send(get("/health"))
        assert conn.response()[2] == b"ok\n"
    finally:
        conn.close()
    assert not any(" /trap " in line for line in tls_server.log)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / SPDY/3\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (get("/", "Content-Length: 99999999\r\n", method="POST"), 413),
        (get("/", "Content-Length: -1\r\n", method="POST"), 413),
        (get("/", "Transfer-Encoding: chunked\r\n", method="POST"), 501),
    ],
    ids=["no-version", "not-http", "huge-headers", "huge-body", "negative-body", "chunked"],
)
def test_bad_requests_get_an_error_and_a_close(
    tls_server: Server, request_bytes: bytes, status: int
) -> None:
    conn = tls_server.connect()
    try:
        conn.send(request_bytes)
        got, headers, _ = conn.response()
        assert (got, headers["connection"]) == (status, "close")
        assert conn.closed_by_peer()
    finally:
        conn.close()
