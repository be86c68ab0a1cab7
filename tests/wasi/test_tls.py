"""TLS streams: bytes OpenSSL already decrypted (``pending()``) are readable for poll_oneoff."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostharness import OUT_AT, HostHarness

from donjon.wasi.api import Preopen
from support.pki import client_context, server_context, write_self_signed

EVENTTYPE_CLOCK, EVENTTYPE_FD_READ = 0, 1


@pytest.fixture
def tls_pair(tmp_path: Path) -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    cert, key = write_self_signed(tmp_path)
    server_ctx = server_context(cert, key)
    client_ctx = client_context(cert)
    a, b = socket.socketpair()
    server = server_ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    client = client_ctx.wrap_socket(b, server_hostname="localhost", do_handshake_on_connect=False)
    shaker = threading.Thread(target=client.do_handshake)
    shaker.start()
    server.do_handshake()
    shaker.join()
    yield server, client
    server.close()
    client.close()


def test_pending_tls_bytes_are_readable(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket], tree: Path
) -> None:
    server, client = tls_pair
    h = HostHarness([Preopen(tree, "/")], [server])
    try:
        client.sendall(b"abcdef")  # one TLS record
        assert h.read(4, 1) == (0, b"a")  # OpenSSL decrypted all six; five wait in its buffer
        assert server.pending() == 5
        sub_fd = struct.pack("<QB7xI28x", 0xAA, EVENTTYPE_FD_READ, 4)
        sub_clock = struct.pack("<QB7xI4xQQH6x", 0xBB, EVENTTYPE_CLOCK, 1, 5_000_000_000, 0, 0)
        h.put(0x6000, sub_fd + sub_clock)
        assert h.call("poll_oneoff", 0x6000, 0x7000, 2, OUT_AT) == 0
        assert h.u32(OUT_AT) == 1
        userdata, error, kind, nbytes = struct.unpack_from("<QHB5xQ", h.get(0x7000, 32))
        assert (userdata, error, kind, nbytes) == (0xAA, 0, EVENTTYPE_FD_READ, 5)
        assert h.read(4, 16) == (0, b"bcdef")
        assert h.write(4, b"back") == (0, 4)
        assert client.recv(16) == b"back"
    finally:
        h.close()
