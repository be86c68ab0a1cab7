"""A client Keep talks to a server Keep over mutually authenticated TLS: each presents
a certificate from the same Steward and checks the other's."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from e2e_helpers import STDIO, listen, sha256

from donjon.keep.sim.lab import LOCALHOST, Lab, free_port

pytestmark = pytest.mark.slow

#: The name the Steward writes into every certificate (policy san_dns), checked by the client.
SERVER_NAME = "echo.keep.test"


def connect_config(port: int) -> str:
    return (
        f'[[files]]\nname = "server"\nkind = "connect"\nhost = "{LOCALHOST}"\nport = {port}\n'
        f'prot = "tls"\ntrust = "steward"\nclient_cert = true\nserver_name = "{SERVER_NAME}"\n'
        # Both Keeps run on the simulated TEE: a development peer is refused unless asked for.
        'expect_platform = "sim"\n'
    )


def test_keep_to_keep_mutual_tls(lab: Lab, wasm: dict[str, Path]) -> None:
    policy = lab.write_policy(
        [sha256(wasm["echo"]), sha256(wasm["ping"])], extra=f'san_dns = ["{SERVER_NAME}"]'
    )
    steward = lab.start_steward(policy)
    port = free_port()
    server_pkg = lab.write_package(
        "echo",
        wasm["echo"],
        lab.steward_config(steward)
        + STDIO
        + listen("LISTEN", port, client_ca="steward")
        + 'expect_client_platform = "sim"\n',
    )
    server = lab.start_keep(server_pkg)
    server.wait_for(r"echo-c: serving fd", 120, stream="stderr")

    # A client with no certificate is refused by the server Keep: the TLS is mutual.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cafile=str(steward.ca_pem))
    with (
        socket.create_connection((LOCALHOST, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=LOCALHOST) as tls,
    ):
        # In TLS 1.3 the server's refusal arrives after the client's handshake completes.
        try:
            tls.sendall(b"no certificate\n")
            answer = tls.recv(100)
        except (ssl.SSLError, ConnectionError):
            answer = b""
    assert answer == b"", "the server Keep answered a client that had no certificate"

    client_pkg = lab.write_package(
        "ping", wasm["ping"], lab.steward_config(steward) + STDIO + connect_config(port)
    )
    client = lab.start_keep(client_pkg)
    assert client.wait(60) == 0, client.tail()
    assert "reply: ping from the client Keep" in client.text("stdout")
