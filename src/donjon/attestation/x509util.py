"""Certificate loading and signature checks that tolerate vendor quirks, and nothing else.

AMD issues VCEKs with serial number 0, which ``cryptography`` accepts with a
deprecation warning. That warning is about AMD's encoding, not something a
user can act on, so it is suppressed *here*, around the calls that emit it,
and never globally.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from donjon.attestation.errors import CertificateExpiredError, ChainError, MalformedEvidenceError
from donjon.errors import plain

_SERIAL_WARNING = r".*serial number.*"


#: What ``cryptography`` raises for bytes it cannot load as a certificate or CRL:
#: ``ValueError``, and ``InvalidVersion`` (not a ValueError) for an unknown version number.
X509_LOAD_ERRORS: tuple[type[Exception], ...] = (ValueError, x509.InvalidVersion)


@contextmanager
def quiet_serials() -> Iterator[None]:
    """Silence only cryptography's non-positive-serial deprecation warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SERIAL_WARNING)
        yield


def load_certificate(data: bytes, *, what: str = "certificate") -> x509.Certificate:
    """Load one DER or PEM certificate; a clean error if it is neither."""
    with quiet_serials():
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                cert = x509.load_pem_x509_certificate(data)
            else:
                cert = x509.load_der_x509_certificate(data)
        except X509_LOAD_ERRORS as exc:
            raise MalformedEvidenceError(
                f"{what}: not a valid X.509 certificate ({plain(exc)})"
            ) from exc
    return touch_certificate(cert, what)


def touch_certificate(cert: x509.Certificate, what: str) -> x509.Certificate:
    """Parse every lazily decoded part now, so hostile encodings fail here, cleanly.

    ``cryptography`` decodes names, extensions and times on first access, and on
    hostile input it may raise types that are not part of its contract (even
    ``KeyError``); hence the broad ``except``, confined to this one place.
    """
    try:
        with quiet_serials():
            cert.serial_number  # noqa: B018 - forcing the lazy decode is the point
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        list(cert.extensions)
        cert.not_valid_before_utc  # noqa: B018
        cert.not_valid_after_utc  # noqa: B018
        cert.signature_algorithm_oid  # noqa: B018
    except Exception as exc:
        raise MalformedEvidenceError(f"{what}: malformed certificate ({exc!r})") from exc
    return cert


def touch_crl(crl: x509.CertificateRevocationList, what: str) -> x509.CertificateRevocationList:
    """The CRL counterpart of :func:`touch_certificate`."""
    try:
        crl.issuer.rfc4514_string()
        for entry in crl:
            entry.serial_number  # noqa: B018
        list(crl.extensions)
        crl.last_update_utc  # noqa: B018
        crl.next_update_utc  # noqa: B018
        crl.signature_algorithm_oid  # noqa: B018
    except Exception as exc:
        raise MalformedEvidenceError(f"{what}: malformed CRL ({exc!r})") from exc
    return crl


def load_certificates(data: bytes, *, what: str = "certificates") -> list[x509.Certificate]:
    """Load a PEM bundle, or one DER certificate."""
    with quiet_serials():
        try:
            if b"-----BEGIN" in data:
                certs = x509.load_pem_x509_certificates(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
        except X509_LOAD_ERRORS as exc:
            raise MalformedEvidenceError(f"{what}: not valid X.509 ({plain(exc)})") from exc
    return [touch_certificate(cert, what) for cert in certs]


def serial_of(cert: x509.Certificate) -> int:
    with quiet_serials():
        return cert.serial_number


def der_of(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateExpiredError(
            f"{what} is not valid before {cert.not_valid_before_utc.isoformat()} "
            f"(evaluated at {now.isoformat()})"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateExpiredError(
            f"{what} expired on {cert.not_valid_after_utc.isoformat()} "
            f"(evaluated at {now.isoformat()})"
        )


def verify_pss_signature(
    issuer_key: object, signature: bytes, data: bytes, params: object, hash_alg: object, what: str
) -> None:
    """RSASSA-PSS with SHA-384, MGF1-SHA-384: the only algorithm the AMD hierarchy uses."""
    if not isinstance(issuer_key, rsa.RSAPublicKey):
        raise ChainError(f"{what}: issuer key is not RSA")
    if not isinstance(params, padding.PSS) or not isinstance(hash_alg, hashes.SHA384):
        raise ChainError(f"{what}: signature is not RSASSA-PSS with SHA-384")
    try:
        issuer_key.verify(signature, data, params, hash_alg)
    except InvalidSignature as exc:
        raise ChainError(f"{what}: RSA-PSS signature does not verify") from exc


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """Check name chaining and the RSA-PSS signature of ``cert`` by ``issuer``."""
    if cert.issuer != issuer.subject:
        raise ChainError(f"{what}: issuer name does not match {issuer.subject.rfc4514_string()}")
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise ChainError(f"{what}: signature algorithm is not RSASSA-PSS")
    try:
        params = cert.signature_algorithm_parameters
        hash_alg = cert.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise ChainError(f"{what}: unsupported signature parameters ({plain(exc)})") from exc
    try:
        issuer_key = issuer.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ChainError(f"{what}: issuer key cannot be decoded ({plain(exc)})") from exc
    verify_pss_signature(
        issuer_key, cert.signature, cert.tbs_certificate_bytes, params, hash_alg, what
    )


def verify_crl_signature(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    if crl.issuer != issuer.subject:
        return False
    if crl.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        return False
    try:
        verify_pss_signature(
            issuer.public_key(),
            crl.signature,
            crl.tbs_certlist_bytes,
            crl.signature_algorithm_parameters,
            crl.signature_hash_algorithm,
            "CRL",
        )
    except (ChainError, UnsupportedAlgorithm, ValueError):
        return False
    return True


def p384_public_key(cert: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedEvidenceError(
            f"{what}: public key cannot be decoded ({plain(exc)})"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ChainError(f"{what}: key is not ECDSA P-384")
    return key
