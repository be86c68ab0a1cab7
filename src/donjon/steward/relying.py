"""The relying party's network side: connect to a Keep over TLS 1.3 and check it.

The checks themselves are pure (:mod:`donjon.attestation.peer`); this module
does the I/O around them: the TLS handshake, and fetching the CRL from a file
or the Steward's ``/v1/crl``.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.attestation.peer import (
    CrlError,
    PeerExpectations,
    PeerExpiredError,
    PeerIdentity,
    UntrustedChainError,
    client_context,
    load_certificate,
    load_crl,
    verify_peer_certificate,
)
from donjon.attestation.x509util import X509_LOAD_ERRORS
from donjon.errors import DonjonError, UsageError, plain

# OpenSSL verify codes that have a more precise meaning than "untrusted".
_X509_V_ERR_CERT_NOT_YET_VALID = 9
_X509_V_ERR_CERT_HAS_EXPIRED = 10


class PeerConnectionError(DonjonError):
    """The Keep could not be reached or the TLS handshake failed."""

    code = "peer.connect"


@dataclass(frozen=True)
class PeerReport:
    host: str
    port: int
    tls_version: str
    cipher: str
    identity: PeerIdentity


def parse_address(text: str, default_port: int = 443) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``HOST``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise UsageError(f"{text!r} is not HOST:PORT")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise UsageError(f"{text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise UsageError(f"{text!r}: port {port} is out of range")
    return host, port


def read_ca(path: Path) -> x509.Certificate:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the Steward CA {path}: {exc.strerror}") from None
    return load_certificate(data, f"Steward CA {path}")


def fetch_crl(
    source: str, *, ca_context: ssl.SSLContext | bool = True, timeout: float = 10.0
) -> x509.CertificateRevocationList:
    """A CRL from a file path or an ``http(s)://`` URL (e.g. ``https://steward/v1/crl``)."""
    if source.startswith(("http://", "https://")):
        try:
            response = httpx.get(source, timeout=timeout, verify=ca_context, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise CrlError(f"cannot fetch the CRL from {source}: {exc}") from None
        if response.status_code != 200:
            raise CrlError(f"cannot fetch the CRL from {source}: HTTP {response.status_code}")
        return load_crl(response.content, f"CRL from {source}")
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise CrlError(f"cannot read the CRL {source}: {exc.strerror}") from None
    return load_crl(data, f"CRL {source}")


def connect_and_verify(
    host: str,
    port: int,
    ca: x509.Certificate,
    *,
    expect: PeerExpectations | None = None,
    crl: x509.CertificateRevocationList | None = None,
    timeout: float = 10.0,
    server_name: str | None = None,
    now: datetime | None = None,
) -> PeerReport:
    """Handshake (TLS 1.3, chain to the Steward CA), then check the attested claims.

    The peer is the TLS server here, so its certificate must allow serverAuth. Without
    ``crl`` the report's identity records revocation as not checked.
    """
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    context = client_context(ca_pem)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name or host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            version = tls.version() or "?"
            cipher = (tls.cipher() or ("?",))[0]
    except ssl.SSLCertVerificationError as exc:
        code = getattr(exc, "verify_code", None)
        message = getattr(exc, "verify_message", str(exc))
        if code in (_X509_V_ERR_CERT_HAS_EXPIRED, _X509_V_ERR_CERT_NOT_YET_VALID):
            raise PeerExpiredError(f"{host}:{port}: {message}") from None
        raise UntrustedChainError(
            f"{host}:{port}: certificate not trusted by the Steward CA: {message}"
        ) from None
    except ssl.SSLError as exc:
        raise PeerConnectionError(
            f"{host}:{port}: TLS handshake failed: {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise PeerConnectionError(
            f"cannot connect to {host}:{port}: {exc.strerror or exc}"
        ) from None
    if not der:
        raise UntrustedChainError(f"{host}:{port} presented no certificate")
    try:
        leaf = x509.load_der_x509_certificate(der)
    except X509_LOAD_ERRORS as exc:
        raise UntrustedChainError(
            f"{host}:{port}: peer certificate is unreadable: {plain(exc)}"
        ) from None
    identity = verify_peer_certificate(
        leaf, ca, now=now or datetime.now(UTC), crl=crl, expect=expect, role="server"
    )
    return PeerReport(host=host, port=port, tls_version=version, cipher=cipher, identity=identity)
