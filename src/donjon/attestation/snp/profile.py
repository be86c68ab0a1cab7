"""What the AMD hierarchy's certificates and CRLs must look like to be relied upon.

A signature only says who issued an object, not what it may be used for.
RFC 5280 asks a verifier to refuse a certificate with a critical extension it
does not understand, to use only CA certificates as issuers, and to treat a
delta or partitioned CRL as something other than the complete list. AMD's
ARK and ASK/ASVK carry critical ``basicConstraints`` (cA) and ``keyUsage``
(keyCertSign; the ARK also cRLSign), and its CRLs carry only non-critical
authorityKeyIdentifier and cRLNumber, so the checks cost genuine evidence
nothing.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from donjon.attestation.errors import ChainError

#: CRL extensions that make a CRL something other than the issuer's complete list.
_SCOPED_CRL = {
    ExtensionOID.DELTA_CRL_INDICATOR: "is a delta CRL",
    ExtensionOID.ISSUING_DISTRIBUTION_POINT: "covers only part of its issuer's certificates",
}


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def check_critical_extensions(cert: x509.Certificate) -> None:
    """Refuse a certificate with a critical extension that this verifier does not know."""
    for ext in cert.extensions:
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise ChainError(
                f"{_cn(cert)} has an unknown critical extension {ext.oid.dotted_string}"
            )


def check_issuer_profile(cert: x509.Certificate, *, crl_sign: bool) -> None:
    """An ARK or ASK/ASVK must be a CA allowed to sign certificates (the ARK: and CRLs)."""
    check_critical_extensions(cert)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ChainError(f"{_cn(cert)} has no basicConstraints: not a CA") from None
    if not constraints.ca:
        raise ChainError(f"{_cn(cert)} is not a CA (basicConstraints cA is false)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise ChainError(f"{_cn(cert)} has no keyUsage") from None
    if not usage.key_cert_sign:
        raise ChainError(f"{_cn(cert)} may not sign certificates (no keyCertSign)")
    if crl_sign and not usage.crl_sign:
        raise ChainError(f"{_cn(cert)} may not sign CRLs (no cRLSign)")


def crl_scope_problem(crl: x509.CertificateRevocationList) -> str | None:
    """Why this CRL cannot stand for its issuer's complete, current list, or None."""
    for ext in crl.extensions:
        if ext.oid in _SCOPED_CRL:
            return _SCOPED_CRL[ext.oid]
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            return f"has an unknown critical extension {ext.oid.dotted_string}"
    return None
