"""Nitro documents carried in an RA-TLS certificate (evervault's cages, and similar).

The certificate's subjectAltName holds a dNSName whose first label is the
attestation document in hex; the document's ``user_data`` is the certificate's
SubjectPublicKeyInfo (DER), which binds the TLS key to the enclave.
"""

from __future__ import annotations

import binascii

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.nitro.document import MAX_DOCUMENT_SIZE, looks_like_document
from donjon.attestation.x509util import quiet_serials

#: Shortest hex label that could be a document (a real one is about 9500 characters).
_MIN_HEX = 256


def load_ratls_certificate(data: bytes) -> x509.Certificate | None:
    """A PEM or DER certificate, or None when ``data`` is neither."""
    with quiet_serials():
        try:
            if data.lstrip().startswith(b"-----BEGIN CERTIFICATE-----"):
                return x509.load_pem_x509_certificate(data)
            if data[:1] == b"\x30":
                return x509.load_der_x509_certificate(data)
        except (ValueError, x509.InvalidVersion):
            return None
    return None


def document_in(cert: x509.Certificate) -> bytes | None:
    """The Nitro document hex-encoded in the first SAN dNSName label, or None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for name in san.get_values_for_type(x509.DNSName):
        label = name.split(".", 1)[0]
        if len(label) < _MIN_HEX or len(label) > 2 * MAX_DOCUMENT_SIZE or len(label) % 2:
            continue
        try:
            raw = binascii.unhexlify(label)
        except (binascii.Error, ValueError):
            continue
        if looks_like_document(raw):
            return raw
    return None


def spki_of(cert: x509.Certificate) -> bytes:
    try:
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except ValueError as exc:
        raise MalformedEvidenceError(f"RA-TLS certificate: unreadable public key ({exc})") from exc


def sniff_ratls(data: bytes) -> bytes | None:
    """The certificate (DER) when it carries a Nitro document, else None."""
    cert = load_ratls_certificate(data)
    if cert is None or document_in(cert) is None:
        return None
    return cert.public_bytes(Encoding.DER)
