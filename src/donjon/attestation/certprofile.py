"""The X.509 profile Donjon's certificate builders share (Keep self-signed, Steward CA and leaf).

One definition keeps what the Keep signs itself, what the Steward issues and
what the relying party checks (``peer_x509``) from drifting apart.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID


def signature_hash(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """SHA-384 for P-384 keys and SHA-256 for P-256: the pairs TLS 1.3 defines."""
    return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()


def parse_certificate(data: bytes) -> x509.Certificate:
    """A PEM or DER certificate; ValueError when it is neither (callers name the file)."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except x509.InvalidVersion as exc:  # not a ValueError: callers would miss it
        raise ValueError(str(exc)) from None


def key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """A keyUsage with only the named bits set."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def with_keep_leaf_profile(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    """A Keep's end-entity certificate: not a CA, signs only, serves and connects over TLS."""
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )


__all__ = ["key_usage", "parse_certificate", "signature_hash", "with_keep_leaf_profile"]
