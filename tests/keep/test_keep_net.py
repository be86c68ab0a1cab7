"""Networking and TLS: the handshake-off-path listener, Keep-to-Keep trust, binds and connects."""

from __future__ import annotations

import errno
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization

from donjon.attestation.claims import WorkloadClaims
from donjon.keep import net, tls
from donjon.keep.config import ListenFile, Prot, Trust
from donjon.keep.identity import Identity
from donjon.keep.net import ConnectError, ListenError, TlsListener

if TYPE_CHECKING:
    from conftest import StandInCA


def tls_listener(ident: Identity, client_ca: str | None = None, **kw: float) -> TlsListener:
    sock = net.bind("127.0.0.1", 0)
    return TlsListener(sock, tls.server_context(ident, client_ca), name="test", **kw)


def port_of(listener: TlsListener) -> int:
    return listener.getsockname()[1]  # type: ignore[index, no-any-return]


def pin_file(tmp_path: Path, ident: Identity) -> Path:
    path = tmp_path / "peer.pem"
    path.write_bytes(ident.certificate.public_bytes(serialization.Encoding.PEM))
    return path


def connect(port: int, client: tls.ClientTls, retries: int = 0) -> socket.socket | ssl.SSLSocket:
    return net.connect(net.ConnectPlan("localhost", port, 5.0, retries, 0.05), client, "test")


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Wait for the handshake thread to record an outcome (it runs after the peer saw it)."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return check()


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


@pytest.fixture
def pinned_server(self_signed: Identity) -> Iterator[TlsListener]:
    with tls_listener(self_signed) as listener:
        yield listener


def test_listener_hands_over_handshaken_tls(
    pinned_server: TlsListener, self_signed: Identity, tmp_path: Path
) -> None:
    assert not readable(pinned_server.fileno(), 0.05)
    client = tls.client_context(
        trust=Trust.PIN, server_name="localhost", pin=pin_file(tmp_path, self_signed)
    )
    with connect(port_of(pinned_server), client) as c:
        assert readable(pinned_server.fileno(), 5)
        conn, _ = pinned_server.accept()
        with conn:
            assert conn.version() == "TLSv1.3"
            c.sendall(b"ping")
            assert conn.recv(4) == b"ping"
            conn.sendall(b"pong")
            assert c.recv(4) == b"pong"
    assert not readable(pinned_server.fileno(), 0)


def test_bad_and_stalled_handshakes_never_reach_the_guest(
    pinned_server: TlsListener, self_signed: Identity, tmp_path: Path
) -> None:
    port = port_of(pinned_server)
    stalled = socket.create_connection(("127.0.0.1", port))  # connects, never says hello
    garbage = socket.create_connection(("127.0.0.1", port))
    garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")  # plaintext to a TLS port
    client = tls.client_context(
        trust=Trust.PIN, server_name="localhost", pin=pin_file(tmp_path, self_signed)
    )
    with stalled, garbage, connect(port, client) as good:
        # The good client completes although the stalled one is still mid-handshake.
        conn, _ = pinned_server.accept()
        with conn:
            good.sendall(b"x")
            assert conn.recv(1) == b"x"
        assert eventually(lambda: pinned_server.handshakes_failed == 1)
        assert pinned_server.handshakes_ok == 1
        pinned_server.setblocking(False)
        with pytest.raises(BlockingIOError):
            pinned_server.accept()


def test_stalled_handshake_is_dropped_at_its_deadline(self_signed: Identity) -> None:
    with tls_listener(self_signed, handshake_timeout_s=0.2) as listener:
        with socket.create_connection(("127.0.0.1", port_of(listener))) as stalled:
            stalled.settimeout(5)
            assert stalled.recv(1) == b""  # the Keep closed it
        assert eventually(lambda: listener.handshakes_failed == 1)
        assert not readable(listener.fileno(), 0)


def test_blocking_accept_honours_timeout(pinned_server: TlsListener) -> None:
    pinned_server.settimeout(0.05)
    with pytest.raises(TimeoutError):
        pinned_server.accept()


def test_unaccepted_connections_apply_back_pressure(
    self_signed: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(net, "MAX_READY", 1)
    client = tls.client_context(
        trust=Trust.PIN, server_name="localhost", pin=pin_file(tmp_path, self_signed)
    )
    with tls_listener(self_signed) as listener:
        port = port_of(listener)
        first = connect(port, client)
        assert eventually(lambda: listener.handshakes_ok == 1)
        second: list[socket.socket | ssl.SSLSocket] = []
        thread = threading.Thread(target=lambda: second.append(connect(port, client)))
        thread.start()
        time.sleep(0.3)
        assert listener.handshakes_ok == 1  # paused: the second waits in the backlog
        listener.accept()[0].close()
        thread.join(timeout=10)
        assert second, "the second client never completed its handshake"
        # The client finishes its side of the handshake before the Keep's worker has
        # read its Finished and counted it: wait for the count, with a deadline.
        assert eventually(lambda: listener.handshakes_ok == 2)
        assert readable(listener.fileno(), 5)
        listener.accept()[0].close()
        first.close()
        second[0].close()


def test_each_handshaken_connection_is_acknowledged_before_hand_over(
    pinned_server: TlsListener,
    self_signed: Identity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the prompt ACK a Nagle client waits ~40 ms for its first byte
    # (bench/echo_latency.py measures it; tests assert no timings).
    acked: list[int] = []
    monkeypatch.setattr(net, "ack_now", lambda sock: acked.append(sock.fileno()))
    client = tls.client_context(
        trust=Trust.PIN, server_name="localhost", pin=pin_file(tmp_path, self_signed)
    )
    with connect(port_of(pinned_server), client), connect(port_of(pinned_server), client):
        conns = [pinned_server.accept()[0] for _ in range(2)]
        assert sorted(acked) == sorted(c.fileno() for c in conns)
        for conn in conns:
            conn.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux-only")
def test_ack_now_asks_the_kernel_for_an_immediate_ack() -> None:
    calls: list[tuple[int, int, int]] = []

    class Recorder:
        def setsockopt(self, level: int, option: int, value: int) -> None:
            calls.append((level, option, value))

    net.ack_now(Recorder())  # type: ignore[arg-type]
    assert calls == [(socket.IPPROTO_TCP, 12, 1)]  # TCP_QUICKACK is 12 in linux/tcp.h


def test_many_concurrent_handshakes(
    pinned_server: TlsListener, self_signed: Identity, tmp_path: Path
) -> None:
    client = tls.client_context(
        trust=Trust.PIN, server_name="localhost", pin=pin_file(tmp_path, self_signed)
    )
    port = port_of(pinned_server)
    results: list[bytes] = []

    def one(i: int) -> None:
        with connect(port, client) as c:
            c.sendall(bytes([i]))
            results.append(c.recv(1))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for _ in threads:
        conn, _ = pinned_server.accept()
        with conn:
            conn.sendall(conn.recv(1))
    for t in threads:
        t.join()
    assert sorted(results) == [bytes([i]) for i in range(16)]


def test_peer_closing_mid_stream_is_clean_eof(
    pinned_server: TlsListener, self_signed: Identity, tmp_path: Path
) -> None:
    client = tls.client_context(
        trust=Trust.PIN, server_name="localhost", pin=pin_file(tmp_path, self_signed)
    )
    c = connect(port_of(pinned_server), client)
    conn, _ = pinned_server.accept()
    with conn:
        c.sendall(b"half")
        # Close the TCP connection without a TLS close_notify.
        assert isinstance(c, ssl.SSLSocket)
        raw = socket.socket(fileno=c.detach())
        raw.close()
        assert conn.recv(10) == b"half"
        assert conn.recv(10) == b""


# Keep to Keep ----------------------------------------------------------------------------------


def test_pin_refuses_any_other_certificate(
    claims: WorkloadClaims, tmp_path: Path, self_signed: Identity
) -> None:
    from donjon.keep import identity
    from donjon.keep.platforms import nil

    impostor = identity.unattested_identity(
        identity.generate_key(nil.create(None)), claims, nil.create(None)
    )
    client = tls.client_context(
        trust=Trust.PIN, server_name="localhost", pin=pin_file(tmp_path, self_signed)
    )
    with tls_listener(impostor) as listener, pytest.raises(ConnectError, match="is not trusted"):
        connect(port_of(listener), client)


def test_keep_to_keep_mutual_tls_through_steward_ca(
    steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    server_id, client_id = steward_ca.issue(claims), steward_ca.issue(claims)
    with tls_listener(server_id, client_ca="steward") as listener:
        client = tls.client_context(
            trust=Trust.STEWARD,
            server_name="localhost",
            identity=client_id,
            present_certificate=True,
            check_name=False,
        )
        with connect(port_of(listener), client) as c:
            conn, _ = listener.accept()
            with conn:
                peer = conn.getpeercert(binary_form=True)
                assert peer == client_id.certificate.public_bytes(serialization.Encoding.DER)
                c.sendall(b"hello keep")
                assert conn.recv(10) == b"hello keep"


def test_client_without_certificate_is_dropped_when_required(
    steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    server_id, client_id = steward_ca.issue(claims), steward_ca.issue(claims)
    with tls_listener(server_id, client_ca="steward") as listener:
        client = tls.client_context(
            trust=Trust.STEWARD, server_name="localhost", identity=client_id, check_name=False
        )
        c = connect(port_of(listener), client)  # TLS 1.3: the client finishes first
        with c, pytest.raises((ssl.SSLError, ConnectionResetError)):
            c.recv(1)  # the server's alert: certificate required
        assert eventually(lambda: listener.handshakes_failed == 1)
        assert not readable(listener.fileno(), 0)


def test_client_from_another_ca_is_dropped(
    steward_ca: StandInCA, other_ca: StandInCA, claims: WorkloadClaims
) -> None:
    server_id = steward_ca.issue(claims)
    stranger = other_ca.issue(claims)
    with tls_listener(server_id, client_ca="steward") as listener:
        client = tls.client_context(
            trust=Trust.STEWARD,
            server_name="localhost",
            identity=Identity(stranger.key, stranger.chain, steward_ca.cert, "nil", claims),
            present_certificate=True,
            check_name=False,
        )
        with (
            connect(port_of(listener), client) as c,
            pytest.raises((ssl.SSLError, ConnectionResetError)),
        ):
            c.recv(1)
        assert eventually(lambda: listener.handshakes_failed == 1)
        assert not readable(listener.fileno(), 0)


def test_server_from_another_ca_is_refused(
    steward_ca: StandInCA, other_ca: StandInCA, claims: WorkloadClaims
) -> None:
    with tls_listener(other_ca.issue(claims)) as listener:
        client = tls.client_context(
            trust=Trust.STEWARD, server_name="localhost", identity=steward_ca.issue(claims)
        )
        with pytest.raises(ConnectError, match="is not trusted: unable to get local issuer"):
            connect(port_of(listener), client)


def test_steward_trust_checks_a_name_only_when_asked(
    steward_ca: StandInCA, claims: WorkloadClaims
) -> None:
    with tls_listener(steward_ca.issue(claims)) as listener:  # no DNS name, like the Steward's
        strict = tls.client_context(
            trust=Trust.STEWARD, server_name="localhost", identity=steward_ca.issue(claims)
        )
        with pytest.raises(ConnectError, match="Hostname mismatch"):
            connect(port_of(listener), strict)
    named = steward_ca.issue(claims, dns_name="localhost")
    with tls_listener(named) as listener, connect(port_of(listener), strict):
        listener.accept()[0].close()


def test_ca_bundle_trust(steward_ca: StandInCA, claims: WorkloadClaims, tmp_path: Path) -> None:
    bundle = tmp_path / "cas.pem"
    bundle.write_bytes(steward_ca.cert.public_bytes(serialization.Encoding.PEM))
    with tls_listener(steward_ca.issue(claims, dns_name="localhost")) as listener:
        client = tls.client_context(trust=Trust.BUNDLE, server_name="localhost", ca_bundle=bundle)
        with connect(port_of(listener), client):
            listener.accept()[0].close()


def test_bad_bundle_is_a_clear_error(tmp_path: Path) -> None:
    bundle = tmp_path / "cas.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(tls.TlsError, match=r"cas\.pem: not a usable PEM certificate bundle"):
        tls.client_context(trust=Trust.BUNDLE, server_name="x", ca_bundle=bundle)


# Binding and connecting ------------------------------------------------------------------------


def test_dual_stack_listener_accepts_ipv4() -> None:
    try:
        sock = net.bind("::", 0)
    except OSError:
        pytest.skip("no IPv6 on this host")
    with sock:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            conn, _ = sock.accept()
            conn.close()


def test_address_in_use_names_entry_and_address() -> None:
    with net.bind("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        entry = ListenFile(kind="listen", name="web", addr="127.0.0.1", port=port, prot=Prot.TCP)
        with pytest.raises(ListenError) as info:
            net.listen(entry, '[[files]] #4 "web" (fd 3)')
    assert str(info.value) == (
        f'[[files]] #4 "web" (fd 3): cannot listen on 127.0.0.1:{port}: address already in use'
    )


def test_connect_retries_then_says_why() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        net.connect(net.ConnectPlan("127.0.0.1", port, 1.0, 1, 0.01), None, "peer")
    assert (
        str(info.value)
        == f"peer: cannot connect to 127.0.0.1:{port} after 2 attempt(s): Connection refused"
    )


def test_connect_plain_to_localhost() -> None:
    with net.bind("127.0.0.1", 0) as server:
        port = server.getsockname()[1]
        with net.connect(net.ConnectPlan("localhost", port, 2.0, 0, 0), None, "x") as c:
            assert c.gettimeout() is None
            conn, _ = server.accept()
            conn.close()


def test_ipv4_fallback_where_ipv6_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    real_listen = net._listen

    def no_ipv6(family: int, sockaddr: tuple[object, ...], dual_stack: bool) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real_listen(family, sockaddr, dual_stack)

    monkeypatch.setattr(net, "_listen", no_ipv6)
    with net.bind("::", 0) as sock:
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[0] == "0.0.0.0"


def test_identity_loads_through_fifos_where_there_is_no_memfd(
    self_signed: Identity, tmp_path: Path
) -> None:
    # The path macOS takes: the PEMs pass through FIFOs, never a regular file.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    password = b"one-time"
    key_pem = self_signed.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    tls._load_via_fifos(ctx, self_signed.certificate_pem(), key_pem, password)
    sock = net.bind("127.0.0.1", 0)
    client = tls.client_context(
        trust=Trust.PIN, server_name="localhost", pin=pin_file(tmp_path, self_signed)
    )
    with TlsListener(sock, ctx, name="fifo") as listener, connect(port_of(listener), client):
        listener.accept()[0].close()


def test_a_wrong_fifo_key_fails_without_hanging(self_signed: Identity) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises((ssl.SSLError, OSError)):  # load_identity turns either into TlsError
        tls._load_via_fifos(ctx, self_signed.certificate_pem(), b"not a key", b"pw")
