"""fd table order, sockets answering BADF to fd_prestat_get, blocking listeners, socket I/O."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostharness import OUT_AT, HostHarness

from donjon.wasi.api import Limits, Preopen

EBADF, EAGAIN, ETIMEDOUT, ENOTSOCK = 8, 6, 73, 57
FILETYPE_DIRECTORY, FILETYPE_SOCKET_STREAM = 3, 6
FDFLAGS_NONBLOCK = 4


@pytest.fixture
def net(tree: Path) -> Iterator[tuple[HostHarness, socket.socket, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    ours, theirs = socket.socketpair()
    h = HostHarness([Preopen(tree, "/"), Preopen(tree / "sub", "/sub")], [listener, ours])
    yield h, listener, theirs
    h.close()
    theirs.close()


def filetype(h: HostHarness, fd: int) -> int:
    assert h.call("fd_fdstat_get", fd, OUT_AT) == 0
    return h.get(OUT_AT, 1)[0]


def test_order_stdio_preopens_then_sockets(
    net: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, _, _ = net
    assert [filetype(h, fd) for fd in (3, 4)] == [FILETYPE_DIRECTORY] * 2
    assert [filetype(h, fd) for fd in (5, 6)] == [FILETYPE_SOCKET_STREAM] * 2
    # wasi-libc's preopen scan: 3 and 4 are preopens, 5 answers BADF so the scan stops.
    assert h.call("fd_prestat_get", 3, OUT_AT) == 0
    assert struct.unpack("<B3xI", h.get(OUT_AT, 8)) == (0, 1)
    assert h.call("fd_prestat_get", 4, OUT_AT) == 0
    assert struct.unpack("<B3xI", h.get(OUT_AT, 8)) == (0, 4)
    assert h.call("fd_prestat_get", 5, OUT_AT) == EBADF
    assert h.call("fd_prestat_get", 6, OUT_AT) == EBADF
    # a new fd: the oldest freed number, else one past the highest (as wasmtime)
    err, fd = h.open(3, "hello.txt")
    assert (err, fd) == (0, 7)
    assert h.call("fd_close", 5) == 0
    assert h.open(3, "hello.txt") == (0, 5)


@pytest.mark.parametrize("use_poll", [True, False], ids=["poll", "select"])
def test_listener_blocks_until_the_call_deadline(
    net: tuple[HostHarness, socket.socket, socket.socket],
    use_poll: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("donjon.wasi.context.USE_POLL", use_poll)
    h, _, _ = net
    h.ctx.limits = Limits(blocking_call_timeout_s=0.2)
    assert h.call("sock_accept", 5, 0, OUT_AT) == ETIMEDOUT


def test_nonblocking_listener_says_eagain(
    net: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, _, _ = net
    assert h.call("fd_fdstat_set_flags", 5, FDFLAGS_NONBLOCK) == 0
    assert h.call("sock_accept", 5, 0, OUT_AT) == EAGAIN


def test_accept_then_fd_read_and_fd_write(
    net: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    """Rust's std talks to TCP streams with fd_read/fd_write: both must work on sockets."""
    h, listener, _ = net
    client = socket.create_connection(listener.getsockname())
    try:
        assert h.call("sock_accept", 5, 0, OUT_AT) == 0
        conn = h.u32(OUT_AT)
        assert conn == 7
        assert h.call("fd_prestat_get", conn, OUT_AT) == EBADF
        client.sendall(b"ping")
        assert h.read(conn, 16) == (0, b"ping")
        assert h.write(conn, b"pong") == (0, 4)
        assert client.recv(16) == b"pong"
        client.shutdown(socket.SHUT_WR)
        assert h.read(conn, 16) == (0, b"")  # EOF
    finally:
        client.close()


def test_connected_stream_and_sock_calls(
    net: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, _, theirs = net
    theirs.sendall(b"hello")
    h.put(0x4000, struct.pack("<II", 0x5000, 3))
    assert h.call("sock_recv", 6, 0x4000, 1, 0, OUT_AT, OUT_AT + 4) == 0
    assert (h.u32(OUT_AT), h.get(0x5000, 3)) == (3, b"hel")
    h.put(0x5000, b"abc")
    assert h.call("sock_send", 6, 0x4000, 1, 0, OUT_AT) == 0
    assert theirs.recv(8) == b"abc"
    assert h.call("sock_shutdown", 6, 2) == 0
    assert theirs.recv(8) == b""
    assert h.call("sock_recv", 3, 0x4000, 1, 0, OUT_AT, OUT_AT + 4) == ENOTSOCK


@pytest.mark.parametrize("use_poll", [True, False], ids=["poll", "select"])
def test_poll_socket_readiness(
    net: tuple[HostHarness, socket.socket, socket.socket],
    use_poll: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both readiness back ends: poll(2) (Linux) and select(2) (macOS, where poll refuses ttys)."""
    monkeypatch.setattr("donjon.wasi.context.USE_POLL", use_poll)
    monkeypatch.setattr("donjon.wasi.poll.USE_POLL", use_poll)
    h, _, theirs = net
    fd_read, clock = 1, 0
    sub_fd = struct.pack("<QB7xI28x", 0xAA, fd_read, 6)
    sub_clock = struct.pack("<QB7xI4xQQH6x", 0xBB, clock, 1, 10_000_000, 0, 0)
    h.put(0x6000, sub_fd + sub_clock)
    assert h.call("poll_oneoff", 0x6000, 0x7000, 2, OUT_AT) == 0
    assert h.u32(OUT_AT) == 1
    assert struct.unpack_from("<QHB", h.get(0x7000, 32)) == (0xBB, 0, clock)
    theirs.sendall(b"x")
    assert h.call("poll_oneoff", 0x6000, 0x7000, 2, OUT_AT) == 0
    assert h.u32(OUT_AT) == 1
    assert struct.unpack_from("<QHB", h.get(0x7000, 32)) == (0xAA, 0, fd_read)
