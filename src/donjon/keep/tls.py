"""TLS 1.3 contexts for the Keep's sockets, from an identity that never touches disk.

Python's ``ssl`` loads a certificate and key only from a path. The Keep's key
must never be written to disk, so it is handed to OpenSSL through an anonymous
in-memory file (``memfd`` on Linux) or a pair of FIFOs elsewhere, and the PEM is
encrypted with a one-time password besides.

Trust for outgoing connections is explicit: the Steward's CA, a PEM bundle,
the system store, or a single pinned certificate (Keep to Keep without a Steward).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import ssl
import sys
import tempfile
import threading
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.attestation.certprofile import parse_certificate
from donjon.attestation.peer import PeerExpectations, PeerIdentity
from donjon.errors import DonjonError, plain
from donjon.keep.config import Trust
from donjon.keep.identity import Identity
from donjon.keep.peercheck import verify_peer


class TlsError(DonjonError):
    """A TLS context could not be built: a bad bundle, pin or identity."""


class PinMismatch(TlsError):
    """The peer presented a certificate other than the pinned one."""


def _pem(certs: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _base_context(purpose: ssl.Purpose) -> ssl.SSLContext:
    protocol = (
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def load_identity(ctx: ssl.SSLContext, identity: Identity) -> None:
    """Give ``ctx`` the Keep's chain and key without writing the key to a file system."""
    password = secrets.token_bytes(32)
    key_pem = identity.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    chain_pem = identity.certificate_pem()
    try:
        if hasattr(os, "memfd_create") and sys.platform.startswith("linux"):
            _load_via_memfd(ctx, chain_pem, key_pem, password)
        else:
            _load_via_fifos(ctx, chain_pem, key_pem, password)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load the Keep's certificate into TLS: {exc}") from exc


def _load_via_memfd(ctx: ssl.SSLContext, chain: bytes, key: bytes, password: bytes) -> None:
    fds = []
    try:
        for data in (chain, key):
            fd = os.memfd_create("donjon-identity", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, data)
        ctx.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}", password)
    finally:
        for fd in fds:
            os.close(fd)


def _load_via_fifos(ctx: ssl.SSLContext, chain: bytes, key: bytes, password: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="donjon-tls-") as tmp:
        os.chmod(tmp, 0o700)
        paths = [Path(tmp) / "chain", Path(tmp) / "key"]
        threads = []
        for path, data in zip(paths, (chain, key), strict=True):
            os.mkfifo(path, 0o600)
            thread = threading.Thread(target=_feed_fifo, args=(path, data), daemon=True)
            thread.start()
            threads.append(thread)
        try:
            ctx.load_cert_chain(str(paths[0]), str(paths[1]), password)
        finally:
            for path, thread in zip(paths, threads, strict=True):
                # A writer still blocked in open() is released by opening the read end.
                with suppress(OSError):
                    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                thread.join(timeout=2)


def _feed_fifo(path: Path, data: bytes) -> None:
    with suppress(OSError), open(path, "wb") as fifo:
        fifo.write(data)


def _load_trust(
    ctx: ssl.SSLContext, *, cafile: Path | None = None, cadata: str | None = None
) -> None:
    try:
        if cafile is not None:
            ctx.load_verify_locations(cafile=str(cafile))
        else:
            ctx.load_verify_locations(cadata=cadata)
    except (OSError, ssl.SSLError) as exc:
        where = cafile if cafile is not None else "certificate"
        raise TlsError(f"{where}: not a usable PEM certificate bundle: {plain(exc)}") from exc


def read_pin(path: Path) -> x509.Certificate:
    """A pinned peer certificate (PEM or DER)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{path}: cannot read pinned certificate: {exc.strerror}") from exc
    try:
        return parse_certificate(data)
    except ValueError as exc:
        raise TlsError(f"{path}: not a certificate: {plain(exc)}") from exc


def server_context(
    identity: Identity, client_ca: str | None = None, base_dir: Path | None = None
) -> ssl.SSLContext:
    """A TLS 1.3 server context; ``client_ca`` ("steward" or a PEM path) requires client certs."""
    ctx = _base_context(ssl.Purpose.CLIENT_AUTH)
    # No session tickets: every connection proves the Keep's key afresh, and a handshake
    # ends with the server's last flight instead of two extra ticket records.
    ctx.num_tickets = 0
    load_identity(ctx, identity)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if client_ca == "steward":
            if identity.ca is None:
                raise TlsError('client_ca = "steward" but this Keep has no Steward certificate')
            _load_trust(ctx, cadata=_pem([identity.ca]))
        else:
            path = Path(client_ca)
            _load_trust(
                ctx, cafile=path if path.is_absolute() or base_dir is None else base_dir / path
            )
    return ctx


@dataclass(frozen=True)
class ClientTls:
    """A client context and what must also hold after the handshake."""

    context: ssl.SSLContext
    server_name: str
    #: SHA-256 of the pinned certificate's DER, checked on every handshake.
    pin_sha256: bytes | None = None
    #: The Steward CAs trusted (steward or bundle trust): issuers of attested peers.
    anchors: tuple[x509.Certificate, ...] = ()

    def check_peer(self, sock: ssl.SSLSocket) -> None:
        if self.pin_sha256 is None:
            return
        der = sock.getpeercert(binary_form=True)
        if der is None or not hmac.compare_digest(hashlib.sha256(der).digest(), self.pin_sha256):
            raise PinMismatch(
                f"{self.server_name}: peer certificate does not match the pinned certificate"
            )

    def check_attestation(
        self,
        sock: ssl.SSLSocket,
        expect: PeerExpectations,
        now: datetime | None = None,
        *,
        crl: x509.CertificateRevocationList | None = None,
    ) -> PeerIdentity:
        """The attested claims in the peer's certificate meet ``expect``, or a PeerError.

        OpenSSL has verified the chain during the handshake; this reads the Steward's
        AttestationResult and WorkloadClaims with the relying-party checks of
        :mod:`donjon.attestation.peer`, against the CA that issued the peer, and refuses
        a peer that ``crl`` (the Steward's, when given) lists.
        """
        return verify_peer(
            sock.getpeercert(binary_form=True),
            self.anchors,
            expect,
            role="server",
            crl=crl,
            now=now,
        )


def client_context(
    *,
    trust: Trust,
    server_name: str,
    identity: Identity | None = None,
    ca_bundle: Path | None = None,
    pin: Path | None = None,
    present_certificate: bool = False,
    check_name: bool = True,
) -> ClientTls:
    """A TLS 1.3 client context for one ``connect`` entry.

    ``check_name`` applies to ``steward`` trust only: system and bundle trust always
    check the server name, and a pin names one certificate, whatever its names.
    """
    ctx = _base_context(ssl.Purpose.SERVER_AUTH)
    ctx.verify_mode = ssl.CERT_REQUIRED
    pin_sha256 = None
    anchors: tuple[x509.Certificate, ...] = ()
    if trust is Trust.SYSTEM:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    elif trust is Trust.BUNDLE:
        if ca_bundle is None:
            raise TlsError('trust = "bundle" needs ca_bundle')
        _load_trust(ctx, cafile=ca_bundle)
        anchors = read_bundle(ca_bundle)
    elif trust is Trust.STEWARD:
        if identity is None or identity.ca is None:
            raise TlsError('trust = "steward" but this Keep has no Steward certificate')
        # A Steward certifies workloads, not DNS names: its certificates name the workload
        # in URIs. The peer is any Keep that Steward attested, unless a name is demanded.
        ctx.check_hostname = check_name
        _load_trust(ctx, cadata=_pem([identity.ca]))
        anchors = (identity.ca,)
    else:
        if pin is None:
            raise TlsError('trust = "pin" needs pin')
        pinned = read_pin(pin)
        # The pinned certificate is the only trust anchor, so OpenSSL refuses any other peer
        # during the handshake; the exact-match check afterwards guards against anything that
        # might chain to it. A pinned certificate names a key, not a host.
        ctx.check_hostname = False
        _load_trust(ctx, cadata=_pem([pinned]))
        pin_sha256 = hashlib.sha256(pinned.public_bytes(serialization.Encoding.DER)).digest()
    if present_certificate:
        if identity is None:
            raise TlsError("client_cert = true but the Keep has no identity")
        load_identity(ctx, identity)
    return ClientTls(ctx, server_name, pin_sha256, anchors)


def read_bundle(path: Path) -> tuple[x509.Certificate, ...]:
    """The CA certificates of a PEM bundle that OpenSSL has already accepted."""
    try:
        return tuple(x509.load_pem_x509_certificates(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise TlsError(f"{path}: not a usable PEM certificate bundle: {plain(exc)}") from exc
