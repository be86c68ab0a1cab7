"""The Keep talks to its Steward over TLS 1.3 only, as the Steward itself serves.

A man in the middle (or a misconfigured proxy) that offers only TLS 1.2 must
not get the CSR: the Keep refuses the handshake.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation.claims import WorkloadClaims
from donjon.keep import tls
from donjon.keep.steward_client import StewardClient, StewardUnreachable

if TYPE_CHECKING:
    from conftest import StandInCA


@pytest.fixture
def tls12_server(
    steward_ca: StandInCA, claims: WorkloadClaims, tmp_path: Path
) -> Iterator[tuple[str, Path, list[str]]]:
    """An HTTPS endpoint trusted by the bundle, that speaks TLS 1.2 at most."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    tls.load_identity(ctx, steward_ca.issue(claims, dns_name="localhost"))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    outcomes: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls_conn:
                        outcomes.append(f"handshake {tls_conn.version()}")
                except (ssl.SSLError, OSError) as exc:
                    outcomes.append(f"refused: {exc}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(steward_ca.cert.public_bytes(serialization.Encoding.PEM))
    try:
        yield f"https://localhost:{listener.getsockname()[1]}/", bundle, outcomes
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_a_tls12_only_steward_never_gets_the_csr(
    tls12_server: tuple[str, Path, list[str]],
) -> None:
    url, bundle, outcomes = tls12_server
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    client = StewardClient(url=url, ca_bundle=bundle)
    assert client.ssl_context().minimum_version is ssl.TLSVersion.TLSv1_3
    with pytest.raises(StewardUnreachable, match="unreachable"):
        client.request(csr)
    with pytest.raises(StewardUnreachable, match="unreachable"):
        client.fetch_crl(5)
    assert outcomes and all(o.startswith("refused") for o in outcomes), outcomes
