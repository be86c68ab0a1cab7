"""Synthetic Arm CCA tokens for negative tests, signed by keys the test makes.

Claim keys and layouts are written out here by hand from the CCA token spec
(draft-ffm-rats-cca-token, Arm DEN0137), not taken from the code under test, so
that a token built here checks the parser rather than agreeing with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

IMPL_ID = bytes(range(32))
INST_ID = b"\x01" + bytes(range(100, 132))
RIM = hashlib.sha512(b"test realm image").digest()


def sign1(payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A tagged COSE_Sign1 with protected header {1: -35} (ES384), built by hand."""
    protected = cbor2.dumps({1: -35})
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA384())))
    return cbor2.dumps(
        cbor2.CBORTag(18, [protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")])
    )


def raw_point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


@dataclass
class FakeCca:
    """A platform (CPAK) and a realm (RAK); ``token()`` signs claims, with overrides."""

    cpak: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    rak: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )

    def realm_claims(
        self, challenge: bytes = b"\x11" * 64, override: dict[int, Any] | None = None
    ) -> dict[int, Any]:
        rak = raw_point(self.rak)
        claims: dict[int, Any] = {
            10: challenge,
            44235: b"\x00" * 64,
            44236: "sha-512",
            44237: rak,
            44238: RIM,
            44239: [b"\x00" * 64] * 4,
            44240: "sha-256",
        }
        claims.update(override or {})
        return {k: v for k, v in claims.items() if v is not None}

    def platform_claims(
        self, rak_hash: bytes, override: dict[int, Any] | None = None
    ) -> dict[int, Any]:
        claims: dict[int, Any] = {
            265: "http://arm.com/CCA-SSD/1.0.0",
            10: rak_hash,
            2396: IMPL_ID,
            256: INST_ID,
            2401: b"\xcf\xcf",
            2395: 0x3000,
            2399: [{1: "RMM", 2: b"\xaa" * 32, 5: b"\xbb" * 32, 6: "sha-256"}],
            2402: "sha-256",
        }
        claims.update(override or {})
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        challenge: bytes = b"\x11" * 64,
        *,
        realm: dict[int, Any] | None = None,
        platform: dict[int, Any] | None = None,
        rak_hash: bytes | None = None,
        cpak: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        realm_claims = self.realm_claims(challenge, realm)
        if rak_hash is None:
            rak_hash = hashlib.sha256(realm_claims[44237]).digest()
        platform_claims = self.platform_claims(rak_hash, platform)
        realm_token = sign1(cbor2.dumps(realm_claims), self.rak)
        platform_token = sign1(cbor2.dumps(platform_claims), cpak or self.cpak)
        return cbor2.dumps(cbor2.CBORTag(399, {44234: platform_token, 44241: realm_token}))

    def cpak_pem(self) -> bytes:
        return self.cpak.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def tastore(self, path: Path) -> Path:
        entry = {
            "implementation-id": IMPL_ID.hex(),
            "instance-id": INST_ID.hex(),
            "pkey": self.cpak_pem().decode(),
        }
        path.write_text(json.dumps([entry]))
        return path
