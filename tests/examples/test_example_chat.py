"""examples/chat: lines relayed to the other clients, joins and leaves announced.

The server runs under ``donjon run`` with the example's own Enarx.toml (moved to
127.0.0.1 and a free port) with TLS, and under ``donjon run-wasm --listen`` in
plain TCP. Each test starts its own server, since client numbers count up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from example_helpers import EXAMPLES, Conn, RunWasmServer, local_listener, make_package

from support.keepproc import KeepProcess
from support.net import free_port

Connect = Callable[..., Conn]


@pytest.fixture
def tls_chat(
    tmp_path: Path, example_wasm: Callable[[str], Path], servers: Callable[..., KeepProcess]
) -> Connect:
    config = local_listener((EXAMPLES / "chat" / "Enarx.toml").read_text())
    assert 'prot = "tls"' in config
    keep = servers(make_package(tmp_path, "chat", example_wasm("chat"), config),
                   "--export-cert", str(tmp_path / "chat.pem"))  # fmt: skip
    port = keep.port()
    keep.wait_for_stdout("chat: serving on fd 3")
    return lambda **kw: Conn(port, tmp_path / "chat.pem", **kw)


@pytest.fixture
def tcp_chat(example_wasm: Callable[[str], Path], donjon_env: dict[str, str]) -> Iterator[Connect]:
    port = free_port()
    server = RunWasmServer(example_wasm("chat"), port, donjon_env, "chat: serving on fd 3")
    yield lambda **kw: Conn(port, **kw)
    server.stop()


@pytest.fixture(params=["tls", "run-wasm"])
def chat(request: pytest.FixtureRequest) -> Connect:
    connect: Connect = request.getfixturevalue(
        {"tls": "tls_chat", "run-wasm": "tcp_chat"}[request.param]
    )
    return connect


def join(connect: Connect, number: int, others: list[Conn]) -> Conn:
    conn = connect()
    assert conn.line() == f"* you are {number}\n"
    for other in others:
        assert other.line() == f"* {number} joined\n"
    return conn


def test_lines_go_to_the_others_and_leaves_are_announced(chat: Connect) -> None:
    one = join(chat, 1, [])
    two = join(chat, 2, [one])
    three = join(chat, 3, [one, two])
    try:
        one.send(b"hello from one\n")
        assert two.line() == "1: hello from one\n"
        assert three.line() == "1: hello from one\n"
        three.send(b"three here\r\n")  # the \r is dropped
        assert one.line() == "3: three here\n"
        assert two.line() == "3: three here\n"
        two.close()
        assert one.line() == "* 2 left\n"
        assert three.line() == "* 2 left\n"
        # The sender never got its own lines back: the next thing it reads is this.
        three.send(b"bye\n")
        assert one.line() == "3: bye\n"
    finally:
        for conn in (one, two, three):
            conn.close()


def test_partial_long_and_unterminated_lines(tls_chat: Connect) -> None:
    one = join(tls_chat, 1, [])
    two = join(tls_chat, 2, [one])
    try:
        one.send(b"split ")
        one.send(b"in three ")
        one.send(b"sends\nand two lines\n")
        assert two.line() == "1: split in three sends\n"
        assert two.line() == "1: and two lines\n"
        one.send(b"x" * 1500 + b"\n")  # longer than the server's 1024-byte line
        assert two.line() == "1: " + "x" * 1024 + "\n"
        assert two.line() == "1: " + "x" * 476 + "\n"
        one.send(b"no newline at the end")
        one.close()
        assert two.line() == "1: no newline at the end\n"
        assert two.line() == "* 1 left\n"
    finally:
        one.close()
        two.close()


def test_a_client_that_stops_reading_is_dropped_and_the_others_go_on(chat: Connect) -> None:
    slow = chat(rcvbuf=4096)
    assert slow.line() == "* you are 1\n"  # then it never reads again
    sender = join(chat, 2, [])
    observer = join(chat, 3, [sender])
    line = b"y" * 999 + b"\n"
    relayed = 0
    try:
        # Flood until the server gives up on the slow client; the kernel buffers
        # hold a few MiB first, so the sender goes on while the observer reads.
        for _ in range(200):  # at most 10 MB
            sender.send(line * 50)
            while True:
                got = observer.line()
                if got == "* 1 left\n":
                    break
                assert got == "2: " + "y" * 999 + "\n"
                relayed += 1
                if relayed % 50 == 0:
                    break
            if got == "* 1 left\n":
                break
        else:
            raise AssertionError("the slow client was never dropped")
        assert sender.line() == "* 1 left\n"
        observer.send(b"still here\n")
        assert sender.line() == "3: still here\n"
    finally:
        for conn in (slow, sender, observer):
            conn.close()
