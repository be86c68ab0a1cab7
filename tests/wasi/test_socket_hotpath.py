"""The socket hot path: poll_oneoff's kept poller, and readv/writev on plain streams.

A guest event loop polls the same fds again and again, so ``poll_oneoff`` keeps
its kernel poll object while the subscribed fds stay the same; these tests
change the set under it and check that no stale registration answers. Plain
sockets read and write every iovec in one system call, as on a native host.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from hostharness import OUT_AT, HostHarness

EAGAIN = 6
FD_READ, FD_WRITE, CLOCK = 1, 2, 0
HANGUP = 1
FDFLAGS_NONBLOCK = 4
SUBS, EVENTS = 0x6000, 0x7000


@pytest.fixture
def pair() -> Iterator[tuple[HostHarness, socket.socket, socket.socket]]:
    """Guest fds 3 and 4 are two connected streams; the test holds their other ends."""
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()
    h = HostHarness([], [a, b])
    yield h, a_peer, b_peer
    h.close()
    a_peer.close()
    b_peer.close()


def fd_sub(userdata: int, kind: int, fd: int) -> bytes:
    return struct.pack("<QB7xI28x", userdata, kind, fd)


def clock_sub(userdata: int, nanoseconds: int) -> bytes:
    return struct.pack("<QB7xI4xQQH6x", userdata, CLOCK, 1, nanoseconds, 0, 0)


def poll(h: HostHarness, *subs: bytes) -> list[tuple[int, int, int, int, int]]:
    """(userdata, errno, type, nbytes, flags) of each event."""
    h.put(SUBS, b"".join(subs))
    assert h.call("poll_oneoff", SUBS, EVENTS, len(subs), OUT_AT) == 0
    return [
        struct.unpack_from("<QHB5xQH6x", h.get(EVENTS + 32 * i, 32)) for i in range(h.u32(OUT_AT))
    ]


def test_changing_the_fd_set_never_reuses_a_stale_registration(
    pair: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, a_peer, _ = pair
    a_peer.sendall(b"x")  # fd 3 readable, fd 4 not
    assert poll(h, fd_sub(1, FD_READ, 3)) == [(1, 0, FD_READ, 1, 0)]
    # The same position now names fd 4: a poller kept for fd 3 would wake at once.
    assert poll(h, fd_sub(2, FD_READ, 4), clock_sub(9, 1_000_000)) == [(9, 0, CLOCK, 0, 0)]
    assert poll(h, fd_sub(1, FD_READ, 3)) == [(1, 0, FD_READ, 1, 0)]


def test_read_and_write_on_one_fd_merge_into_one_registration(
    pair: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, a_peer, _ = pair
    # Writable but not readable: only the write subscription fires.
    assert poll(h, fd_sub(1, FD_READ, 3), fd_sub(2, FD_WRITE, 3)) == [(2, 0, FD_WRITE, 1, 0)]
    a_peer.sendall(b"x")
    assert poll(h, fd_sub(1, FD_READ, 3), fd_sub(2, FD_WRITE, 3)) == [
        (1, 0, FD_READ, 1, 0),
        (2, 0, FD_WRITE, 1, 0),
    ]


def test_a_host_fd_closed_underneath_is_reported_not_spun_on(
    pair: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, _, _ = pair
    entry = h.ctx.fds.get(4)
    os.close(entry.hostfd)  # POLLNVAL from now on
    try:
        got: list[list[tuple[int, int, int, int, int]]] = []
        waiter = threading.Thread(target=lambda: got.append(poll(h, fd_sub(7, FD_READ, 4))))
        waiter.daemon = True
        waiter.start()
        waiter.join(timeout=10)
        assert got == [[(7, 0, FD_READ, 0, HANGUP)]]
    finally:
        entry.sock.detach()  # the fd is gone already; do not close a reused number


def test_one_read_fills_every_iovec(
    pair: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, a_peer, _ = pair
    a_peer.sendall(b"abcdef")
    h.put(0x4000, struct.pack("<IIII", 0x5000, 3, 0x5100, 3))
    assert h.call("fd_read", 3, 0x4000, 2, OUT_AT) == 0
    assert (h.u32(OUT_AT), h.get(0x5000, 3), h.get(0x5100, 3)) == (6, b"abc", b"def")


def test_one_write_sends_every_iovec(
    pair: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, a_peer, _ = pair
    h.put(0x5000, b"abc")
    h.put(0x5100, b"defg")
    h.put(0x4000, struct.pack("<IIIIII", 0x5000, 3, 0x5200, 0, 0x5100, 4))
    assert h.call("fd_write", 3, 0x4000, 3, OUT_AT) == 0
    assert h.u32(OUT_AT) == 7
    assert a_peer.recv(16) == b"abcdefg"


def test_nonblocking_read_with_nothing_there_is_eagain(
    pair: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, a_peer, _ = pair
    assert h.call("fd_fdstat_set_flags", 3, FDFLAGS_NONBLOCK) == 0
    h.put(0x4000, struct.pack("<II", 0x5000, 8))
    assert h.call("fd_read", 3, 0x4000, 1, OUT_AT) == EAGAIN
    a_peer.sendall(b"late")
    assert h.call("fd_read", 3, 0x4000, 1, OUT_AT) == 0
    assert (h.u32(OUT_AT), h.get(0x5000, 4)) == (4, b"late")


def test_blocking_read_waits_for_the_peer(
    pair: tuple[HostHarness, socket.socket, socket.socket],
) -> None:
    h, a_peer, _ = pair
    h.put(0x4000, struct.pack("<II", 0x5000, 8))
    sender = threading.Timer(0.05, lambda: a_peer.sendall(b"later"))
    sender.start()
    assert h.call("fd_read", 3, 0x4000, 1, OUT_AT) == 0
    sender.join()
    assert (h.u32(OUT_AT), h.get(0x5000, 5)) == (5, b"later")
