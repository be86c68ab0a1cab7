"""Relying-party checks: is this peer certificate an attested Keep that I accept?

Pure functions, no network: given the peer's leaf certificate, the Steward CA,
an optional CRL and the caller's expectations, verify the chain and read the
AttestationResult extension the Steward wrote. Each way to fail has its own
error type and ``code``, so a client can tell an expired certificate from a
revoked one, a debug TEE or the wrong workload.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from donjon.attestation import oids
from donjon.attestation.claims import AttestationResult, ClaimsError, WorkloadClaims
from donjon.errors import DonjonError, UsageError

DEVELOPMENT_PLATFORMS = frozenset({"nil", "sim", "kvm"})


class PeerError(DonjonError):
    """The peer is not an attested Keep this relying party accepts."""

    code = "peer.refused"


class UntrustedChainError(PeerError):
    code = "peer.chain"


class PeerExpiredError(PeerError):
    code = "peer.expired"


class PeerRevokedError(PeerError):
    code = "peer.revoked"


class CrlError(PeerError):
    code = "peer.crl"


class MissingAttestationError(PeerError):
    code = "peer.no_attestation"


class DevelopmentPeerError(PeerError):
    """The peer runs outside a TEE (nil/sim/kvm); refused unless asked for."""

    code = "peer.development"


class DebugPeerError(PeerError):
    code = "peer.debug"


class PlatformNotAllowedError(PeerError):
    code = "peer.platform"


class WorkloadMismatchError(PeerError):
    code = "peer.workload"


class ClaimsBindingError(PeerError):
    """The certificate's workload claims and its attestation result disagree."""

    code = "peer.claims_binding"


class TcbTooLowError(PeerError):
    code = "peer.tcb"


@dataclass(frozen=True)
class PeerExpectations:
    """What the caller demands. The defaults refuse development and debug peers."""

    workload_sha256: bytes | None = None
    min_tcb: Mapping[str, int] = field(default_factory=dict)
    platforms: frozenset[str] | None = None  # None: any TEE platform
    allow_development: bool = False
    allow_debug: bool = False


@dataclass(frozen=True)
class PeerCheck:
    id: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class PeerIdentity:
    """What an accepted peer proved."""

    certificate: x509.Certificate
    result: AttestationResult
    workload: WorkloadClaims | None
    checks: tuple[PeerCheck, ...]

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "x")


def parse_tcb(text: str) -> dict[str, int]:
    """``"bl=3 tee=0 snp=8 ucode=115"`` (spaces or commas) -> components."""
    out: dict[str, int] = {}
    for part in text.replace(",", " ").split():
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise UsageError(f"TCB component {part!r} is not NAME=NUMBER (e.g. snp=8)")
        try:
            out[name.strip().lower()] = int(value, 0)
        except ValueError:
            raise UsageError(f"TCB component {part!r} has a non-numeric value") from None
    return out


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise UsageError(f"{what} is not a certificate: {exc}") from None


def load_crl(data: bytes, what: str = "CRL") -> x509.CertificateRevocationList:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CrlError(f"{what} is not a CRL: {exc}") from None


def client_context(
    ca_pem: bytes, *, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A TLS 1.3 client context trusting only the Steward CA.

    Host names are not checked: a Keep's identity is its attested claims, which
    :func:`verify_peer_certificate` checks after the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"the Steward CA is not a PEM certificate: {exc}") from None
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def _check_chain(leaf: x509.Certificate, ca: x509.Certificate, now: datetime) -> None:
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise UntrustedChainError("the given Steward CA certificate is not a CA")
    if leaf.issuer != ca.subject:
        raise UntrustedChainError(
            f"peer certificate is issued by {leaf.issuer.rfc4514_string()!r}, "
            f"not by the Steward CA {ca.subject.rfc4514_string()!r}"
        )
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise UntrustedChainError(
            f"peer certificate is not signed by the Steward CA: {exc}"
        ) from None
    for cert, who in ((ca, "Steward CA"), (leaf, "peer certificate")):
        if now < cert.not_valid_before_utc:
            raise PeerExpiredError(
                f"{who} is not valid before {cert.not_valid_before_utc.isoformat()}"
            )
        if now > cert.not_valid_after_utc:
            raise PeerExpiredError(f"{who} expired at {cert.not_valid_after_utc.isoformat()}")
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise UntrustedChainError("peer certificate has no extendedKeyUsage") from None
    if ExtendedKeyUsageOID.SERVER_AUTH not in eku and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise UntrustedChainError("peer certificate is not for TLS (no serverAuth/clientAuth)")


def _check_crl(
    leaf: x509.Certificate, ca: x509.Certificate, crl: x509.CertificateRevocationList, now: datetime
) -> None:
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise CrlError("the CRL is not signed by the Steward CA")
    if crl.next_update_utc is not None and now > crl.next_update_utc:
        raise CrlError(f"the CRL is stale (nextUpdate {crl.next_update_utc.isoformat()})")
    if now < crl.last_update_utc:
        raise CrlError(f"the CRL is from the future (thisUpdate {crl.last_update_utc.isoformat()})")
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    if entry is not None:
        raise PeerRevokedError(
            f"peer certificate {leaf.serial_number:x} was revoked at "
            f"{entry.revocation_date_utc.isoformat()}"
        )


def _extension_bytes(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def read_attestation(cert: x509.Certificate) -> tuple[AttestationResult, WorkloadClaims | None]:
    """The Steward's AttestationResult and the copied WorkloadClaims, strictly decoded."""
    der = _extension_bytes(cert, oids.ATTESTATION_RESULT)
    if der is None:
        raise MissingAttestationError(
            "peer certificate carries no attestation result: not issued by a Donjon Steward"
        )
    try:
        result = AttestationResult.from_der(der)
    except ClaimsError as exc:
        raise MissingAttestationError(f"peer attestation result is unreadable: {exc}") from None
    claims_der = _extension_bytes(cert, oids.WORKLOAD_CLAIMS)
    workload = result.workload
    if claims_der is not None:
        try:
            copied = WorkloadClaims.from_der(claims_der)
        except ClaimsError as exc:
            raise ClaimsBindingError(f"peer workload claims are unreadable: {exc}") from None
        if workload is not None and copied != workload:
            raise ClaimsBindingError("peer workload claims differ from its attestation result")
        workload = copied
    return result, workload


def verify_peer_certificate(
    leaf: x509.Certificate,
    ca: x509.Certificate,
    *,
    now: datetime,
    crl: x509.CertificateRevocationList | None = None,
    expect: PeerExpectations | None = None,
) -> PeerIdentity:
    """Accept ``leaf`` as an attested Keep, or raise the PeerError that says why not."""
    expect = expect or PeerExpectations()
    checks: list[PeerCheck] = []
    _check_chain(leaf, ca, now)
    checks.append(PeerCheck("chain", True, "signed by the Steward CA, in its validity period"))
    if crl is not None:
        _check_crl(leaf, ca, crl, now)
        checks.append(PeerCheck("revocation", True, "not in the Steward's CRL"))
    result, workload = read_attestation(leaf)
    checks.append(PeerCheck("attestation", True, f"platform {result.platform}"))
    if result.development or result.platform in DEVELOPMENT_PLATFORMS:
        if not expect.allow_development:
            raise DevelopmentPeerError(
                f"peer is not in a TEE (platform {result.platform}, development certificate)"
            )
        checks.append(PeerCheck("development", True, "development peer allowed by the caller"))
    if expect.platforms is not None and result.platform not in expect.platforms:
        raise PlatformNotAllowedError(
            f"peer platform {result.platform} is not one of {', '.join(sorted(expect.platforms))}"
        )
    if result.debug and not expect.allow_debug:
        raise DebugPeerError("peer TEE allows debugging: its memory is not confidential")
    checks.append(PeerCheck("debug", True, "debug " + ("allowed" if result.debug else "off")))
    if expect.workload_sha256 is not None:
        if workload is None:
            raise WorkloadMismatchError("peer certificate names no workload")
        if not hmac.compare_digest(workload.wasm_sha256, expect.workload_sha256):
            raise WorkloadMismatchError(
                f"peer runs workload {workload.wasm_sha256.hex()}, "
                f"expected {expect.workload_sha256.hex()}"
            )
        checks.append(PeerCheck("workload", True, f"wasm sha256 {workload.wasm_sha256.hex()}"))
    if expect.min_tcb:
        actual = parse_tcb(result.tcb) if result.tcb else {}
        short = [
            f"{name}={actual.get(name, 'missing')} < {minimum}"
            for name, minimum in sorted(expect.min_tcb.items())
            if actual.get(name, -1) < minimum
        ]
        if short:
            raise TcbTooLowError(f"peer TCB below the minimum: {', '.join(short)}")
        checks.append(PeerCheck("tcb", True, f"TCB {result.tcb} meets the minimum"))
    return PeerIdentity(certificate=leaf, result=result, workload=workload, checks=tuple(checks))
