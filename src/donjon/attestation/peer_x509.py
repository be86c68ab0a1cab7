"""The X.509 half of the relying-party checks: the chain to the Steward CA, the leaf's
profile and the Steward's CRL. Fail closed, as RFC 5280 asks of a verifier: a critical
extension not processed here, a CA leaf, a CRL that cannot prove it is current or
complete are refused, each with its own error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from donjon.attestation import oids
from donjon.attestation.certprofile import parse_certificate
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.peer_errors import (
    CrlError,
    CrlNotYetValidError,
    CrlScopeError,
    CrlSignatureError,
    CrlStaleError,
    LeafProfileError,
    PeerExpiredError,
    PeerIsCAError,
    PeerRevokedError,
    UntrustedChainError,
    WrongPurposeError,
)
from donjon.attestation.x509util import X509_LOAD_ERRORS, touch_certificate, touch_crl
from donjon.errors import UsageError, plain

#: Who the peer is to us: the server we connected to, or a client that connected to us.
PeerRole = Literal["server", "client"]

#: Critical leaf extensions these checks understand; any other critical one is refused.
_KNOWN_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        oids.ATTESTATION_RESULT,
        oids.WORKLOAD_CLAIMS,
    }
)
#: CRL extensions that make a CRL less than the issuer's complete list.
_SCOPED_CRL = {
    ExtensionOID.DELTA_CRL_INDICATOR: "is a delta CRL",
    ExtensionOID.ISSUING_DISTRIBUTION_POINT: "covers only part of the CA's certificates",
}


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    """A certificate whose every lazily decoded part has been read (see ``touch_certificate``)."""
    if not data.strip():
        raise UsageError(f"{what} is not a certificate: the file is empty")
    try:
        return touch_certificate(parse_certificate(data), what)
    except (ValueError, MalformedEvidenceError) as exc:
        raise UsageError(f"{what} is not a certificate: {plain(exc)}") from None


def load_crl(data: bytes, what: str = "CRL") -> x509.CertificateRevocationList:
    """A CRL whose issuer, entries, extensions and dates decode: ``cryptography`` reads
    them lazily, so a hostile CRL would otherwise fail later, in a check, with a
    ``ValueError`` (found by ``fuzz/targets.py``)."""
    try:
        if b"-----BEGIN" in data:
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        return touch_crl(crl, what)
    except X509_LOAD_ERRORS as exc:
        raise CrlError(f"{what} is not a CRL: {plain(exc)}") from None
    except MalformedEvidenceError as exc:
        raise CrlError(f"{what} is not a CRL: {plain(exc)}") from None


def touch_peer(leaf: x509.Certificate) -> None:
    """Decode the peer's whole certificate first: a field that fails to decode refuses
    the peer (``peer.chain``) instead of raising ``ValueError`` from inside a check."""
    try:
        touch_certificate(leaf, "peer certificate")
    except MalformedEvidenceError as exc:
        raise UntrustedChainError(f"peer certificate is unreadable: {exc}") from None


def check_chain(leaf: x509.Certificate, ca: x509.Certificate, now: datetime) -> None:
    """``leaf`` is signed by ``ca``, a CA that may sign certificates; both valid at ``now``."""
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    except ValueError as exc:
        raise UntrustedChainError(
            f"the Steward CA has malformed extensions: {plain(exc)}"
        ) from None
    if bc is None or not bc.ca:
        raise UntrustedChainError("the given Steward CA certificate is not a CA")
    usage = _key_usage(ca)
    if usage is not None and not usage.key_cert_sign:
        raise UntrustedChainError("the given Steward CA may not sign certificates (no keyCertSign)")
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


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def check_leaf_profile(leaf: x509.Certificate, role: PeerRole = "server") -> str:
    """A Keep leaf as the Steward issues it, for ``role``: its TLS purpose, on success.

    Refuses (RFC 5280 6.1.3/4.2) a critical extension this module does not process, a
    leaf that is a CA or lacks basicConstraints (a Steward always writes cA=false), a
    keyUsage without digitalSignature (TLS 1.3 signs with the key), and an
    extendedKeyUsage without serverAuth (a server peer) or clientAuth (a client peer).
    """
    try:
        extensions = list(leaf.extensions)
    except ValueError as exc:
        raise LeafProfileError(f"peer certificate has malformed extensions: {plain(exc)}") from None
    for ext in extensions:
        if ext.critical and ext.oid not in _KNOWN_CRITICAL:
            raise LeafProfileError(
                f"peer certificate has an unknown critical extension {ext.oid.dotted_string}"
            )
    by_oid = {ext.oid: ext.value for ext in extensions}
    bc = by_oid.get(ExtensionOID.BASIC_CONSTRAINTS)
    if not isinstance(bc, x509.BasicConstraints):
        raise LeafProfileError(
            "peer certificate has no basicConstraints (a Steward's leaves say cA=false)"
        )
    if bc.ca:
        raise PeerIsCAError("peer certificate is a CA certificate (basicConstraints cA=true)")
    usage = by_oid.get(ExtensionOID.KEY_USAGE)
    if isinstance(usage, x509.KeyUsage) and not usage.digital_signature:
        raise LeafProfileError("peer certificate's keyUsage does not allow digitalSignature")
    eku = by_oid.get(ExtensionOID.EXTENDED_KEY_USAGE)
    wanted, name = (
        (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth")
        if role == "server"
        else (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth")
    )
    if not isinstance(eku, x509.ExtendedKeyUsage):
        raise WrongPurposeError(f"peer certificate has no extendedKeyUsage (needs {name})")
    if wanted not in eku:
        raise WrongPurposeError(
            f"peer certificate is not for a TLS {role} (extendedKeyUsage lacks {name})"
        )
    return name


def crl_scope_problem(crl: x509.CertificateRevocationList) -> str | None:
    """Why this CRL cannot stand for the CA's complete list, or None."""
    try:
        extensions = list(crl.extensions)
    except ValueError as exc:
        return f"has malformed extensions ({plain(exc)})"
    for ext in extensions:
        if ext.oid in _SCOPED_CRL:
            return _SCOPED_CRL[ext.oid]
        if ext.critical and ext.oid not in (ExtensionOID.CRL_NUMBER,):
            return f"has an unknown critical extension {ext.oid.dotted_string}"
    return None


def check_crl(
    leaf: x509.Certificate, ca: x509.Certificate, crl: x509.CertificateRevocationList, now: datetime
) -> None:
    """The Steward's complete CRL, current at ``now``, does not list ``leaf``.

    A CRL without nextUpdate cannot prove it is current, so it never counts as such,
    whatever its age; a revocation it lists still applies.
    """
    if crl.issuer != ca.subject:
        raise CrlSignatureError(
            f"the CRL is issued by {crl.issuer.rfc4514_string()!r}, "
            f"not by the Steward CA {ca.subject.rfc4514_string()!r}"
        )
    try:
        signed = crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, InvalidSignature):
        signed = False
    if not signed:
        raise CrlSignatureError("the CRL is not signed by the Steward CA")
    usage = _key_usage(ca)
    if usage is not None and not usage.crl_sign:
        raise CrlSignatureError("the Steward CA may not sign CRLs (no cRLSign)")
    try:
        entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    except ValueError as exc:
        raise CrlError(f"the CRL has a malformed entry: {plain(exc)}") from None
    if entry is not None:
        raise PeerRevokedError(
            f"peer certificate {leaf.serial_number:x} was revoked at "
            f"{entry.revocation_date_utc.isoformat()}"
        )
    problem = crl_scope_problem(crl)
    if problem is not None:
        raise CrlScopeError(f"the CRL {problem}: it is not the Steward's complete list")
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    if now < this_update:
        raise CrlNotYetValidError(
            f"the CRL is from the future (thisUpdate {this_update.isoformat()})"
        )
    if next_update is None:
        raise CrlStaleError(
            f"the CRL (thisUpdate {this_update.isoformat()}) has no nextUpdate, "
            "so it can never prove it is current"
        )
    if now > next_update:
        raise CrlStaleError(
            f"the CRL is stale (nextUpdate {next_update.isoformat()}, now {now.isoformat()})"
        )
