"""A throw-away Nitro-like PKI (root -> intermediate -> leaf, ECDSA P-384) and documents
signed by its leaf, laid out by hand from AWS's attestation document description."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    start: datetime,
    life: timedelta,
    ca: bool,
    path_length: int | None = None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + life)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True)
        .add_extension(_usage(ca=ca), True)
        .sign(issuer_key, hashes.SHA384())
    )


@dataclass
class FakeNitro:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    made: datetime

    def document(self, **fields: Any) -> bytes:
        payload: dict[str, Any] = {
            "module_id": "i-0123456789abcdef0-enc0123456789abcdef",
            "digest": "SHA384",
            "timestamp": int(self.made.timestamp() * 1000),
            "pcrs": {i: (bytes([i + 1]) * 48 if i < 5 else b"\x00" * 48) for i in range(16)},
            "certificate": self.leaf.public_bytes(Encoding.DER),
            "cabundle": [c.public_bytes(Encoding.DER) for c in (self.root, self.intermediate)],
            "public_key": None,
            "user_data": None,
            "nonce": None,
        }
        payload.update(fields)
        payload = {k: v for k, v in payload.items() if v is not ...}
        return sign_document(cbor2.dumps(payload), self.leaf_key)


def sign_document(payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    protected = cbor2.dumps({1: -35})
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA384())))
    return cbor2.dumps([protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")])


def make_nitro(made: datetime) -> FakeNitro:
    root_key = ec.generate_private_key(ec.SECP384R1())
    mid_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    start = made - timedelta(minutes=5)
    root = cert("fake.nitro-enclaves", root_key, "fake.nitro-enclaves", root_key,
                start=start - timedelta(days=1), life=timedelta(days=3650), ca=True)  # fmt: skip
    mid = cert("fake-zonal", mid_key, "fake.nitro-enclaves", root_key,
               start=start, life=timedelta(days=3), ca=True, path_length=0)  # fmt: skip
    leaf = cert("fake-enclave", leaf_key, "fake-zonal", mid_key,
                start=start, life=timedelta(hours=3), ca=False)  # fmt: skip
    return FakeNitro(root, mid, leaf, leaf_key, made)
