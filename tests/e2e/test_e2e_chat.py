"""The chat server in an attested Keep, with several verifying clients at once."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from e2e_helpers import STDIO, listen, sha256

from donjon.attestation.peer import PeerExpectations
from donjon.keep.sim.lab import Lab, connect, free_port

pytestmark = pytest.mark.slow


def read_line(sock: ssl.SSLSocket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_chat_with_three_clients(lab: Lab, wasm: dict[str, Path]) -> None:
    steward = lab.start_steward(lab.write_policy([sha256(wasm["chat"])]))
    port = free_port()
    package = lab.write_package(
        "chat", wasm["chat"], lab.steward_config(steward) + STDIO + listen("chat", port)
    )
    keep = lab.start_keep(package)
    keep.wait_for(r"chat: serving on fd", 120, stream="stdout")

    expect = PeerExpectations(
        workload_sha256=sha256(wasm["chat"]), platforms=frozenset({"sim"}), allow_development=True
    )
    clients = []
    try:
        for number in (1, 2, 3):
            sock, identity = connect(port, steward.ca_pem, expect=expect)
            sock.settimeout(10)
            clients.append(sock)
            assert identity.result.platform == "sim"
            assert read_line(sock) == f"* you are {number}\n"
        # The first two hear about the third joining (and the first about the second).
        assert read_line(clients[0]) == "* 2 joined\n"
        assert read_line(clients[0]) == "* 3 joined\n"
        assert read_line(clients[1]) == "* 3 joined\n"

        clients[0].sendall(b"hello from one\n")
        assert read_line(clients[1]) == "1: hello from one\n"
        assert read_line(clients[2]) == "1: hello from one\n"
        clients[2].sendall(b"three here\r\n")
        assert read_line(clients[0]) == "3: three here\n"
        assert read_line(clients[1]) == "3: three here\n"

        clients[1].close()
        assert read_line(clients[0]) == "* 2 left\n"
        assert read_line(clients[2]) == "* 2 left\n"
    finally:
        for sock in clients:
            sock.close()
    keep.wait_for(r"chat: client 3 joined", 5, stream="stdout")
