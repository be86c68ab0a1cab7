"""CPAK trust anchors: which public key may sign the platform token of which CCA platform.

There is no certificate in a CCA token. The platform token names its
implementation ID and instance ID; a verifier knows each platform's CPAK
(the key its hardware root of trust signs with) from its manufacturer, keyed by
those two IDs. This is the trust-anchor store of Veraison and Trustee, and
Donjon reads Trustee's ``tastore.json`` shape::

    [ { "implementation-id": "<hex, 32 bytes>",
        "instance-id":       "<hex, 33 bytes>",
        "pkey":              { JWK: "kty": "EC", "crv": "P-384", "x": ..., "y": ... }
                             or "-----BEGIN PUBLIC KEY----- ..." (PEM) } ]

A single CPAK can also be given on its own (``donjon attest verify --cpak``),
as a PEM public key or a JWK: it then vouches for whatever platform signs with it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation.cca.token import IMPLEMENTATION_ID_SIZE, INSTANCE_ID_SIZE

_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_JWK_KEYS = frozenset({"kty", "crv", "x", "y", "kid", "alg", "use", "key_ops"})


class AnchorError(ValueError):
    """A trust anchor (store entry, JWK or PEM) that cannot be used; names the entry."""


@dataclass(frozen=True)
class TrustAnchor:
    implementation_id: bytes | None  # None: a bare --cpak, for any platform
    instance_id: bytes | None
    key: ec.EllipticCurvePublicKey
    source: str


@dataclass(frozen=True)
class AnchorStore:
    """Trust anchors by (implementation ID, instance ID), plus any bare CPAKs."""

    anchors: Mapping[tuple[bytes, bytes], TrustAnchor] = field(default_factory=dict)
    bare: tuple[TrustAnchor, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.anchors or self.bare)

    def find(self, implementation_id: bytes, instance_id: bytes) -> TrustAnchor | None:
        return self.anchors.get((implementation_id, instance_id))

    def merged(self, other: AnchorStore) -> AnchorStore:
        """Both stores' anchors; an ID pair in both must name the same key."""
        merged = dict(self.anchors)
        for ids, anchor in other.anchors.items():
            mine = merged.get(ids)
            if mine is not None and mine.key != anchor.key:
                raise AnchorError(
                    f"{anchor.source}: implementation/instance ID {ids[0].hex()[:16]}... "
                    f"already has another CPAK in {mine.source}"
                )
            merged[ids] = anchor
        return AnchorStore(merged, self.bare + other.bare)


def public_key(value: Any, where: str) -> ec.EllipticCurvePublicKey:
    """An EC public key from a JWK (dict or JSON text) or a PEM SubjectPublicKeyInfo."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise AnchorError(f"{where}: not a JWK (JSON: {exc.msg})") from exc
    if isinstance(value, Mapping):
        return _jwk(value, where)
    if isinstance(value, (str, bytes)):
        data = value.encode() if isinstance(value, str) else value
        if b"-----BEGIN" not in data:
            raise AnchorError(f"{where}: neither a PEM public key nor a JWK")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise AnchorError(f"{where}: not a PEM public key ({str(exc)[:80]})") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in {
            c.name for c in _CURVES.values()
        }:
            raise AnchorError(f"{where}: a CPAK must be an EC P-256, P-384 or P-521 key")
        return key
    raise AnchorError(f"{where}: neither a PEM public key nor a JWK")


def _jwk(jwk: Mapping[str, Any], where: str) -> ec.EllipticCurvePublicKey:
    if "d" in jwk:
        raise AnchorError(f"{where}: this JWK holds a private key; give the public part only")
    unknown = sorted(set(jwk) - _JWK_KEYS)
    if unknown:
        raise AnchorError(f"{where}: unknown JWK member(s) {', '.join(unknown)}")
    if jwk.get("kty") != "EC":
        raise AnchorError(f'{where}: JWK kty must be "EC", got {jwk.get("kty")!r}')
    curve = _CURVES.get(str(jwk.get("crv")))
    if curve is None:
        raise AnchorError(f"{where}: JWK crv {jwk.get('crv')!r} is not P-256, P-384 or P-521")
    size = (curve.key_size + 7) // 8
    x = _b64url(jwk.get("x"), size, f"{where}: JWK x")
    y = _b64url(jwk.get("y"), size, f"{where}: JWK y")
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        ).public_key()
    except ValueError as exc:
        raise AnchorError(f"{where}: JWK point is not on {jwk['crv']}") from exc


def _b64url(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise AnchorError(f"{what} must be a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AnchorError(f"{what} is not base64url") from exc
    if len(raw) != size:
        raise AnchorError(f"{what} is {len(raw)} bytes, expected {size}")
    return raw


def _hex(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise AnchorError(f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise AnchorError(f"{what} is not hex") from exc
    if len(raw) != size:
        raise AnchorError(f"{what} is {len(raw)} bytes, expected {size}")
    return raw


def parse_store(data: bytes, source: str) -> AnchorStore:
    """A ``tastore.json`` (a JSON array of entries, or one entry)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnchorError(f"{source}: not a JSON trust-anchor store ({exc})") from exc
    entries = doc if isinstance(doc, list) else [doc]
    anchors: dict[tuple[bytes, bytes], TrustAnchor] = {}
    for index, entry in enumerate(entries):
        where = f"{source}[{index}]"
        if not isinstance(entry, Mapping):
            raise AnchorError(f"{where}: an entry must be an object")
        unknown = sorted(set(entry) - {"implementation-id", "instance-id", "pkey"})
        if unknown:
            raise AnchorError(f"{where}: unknown member(s) {', '.join(unknown)}")
        for member in ("implementation-id", "instance-id", "pkey"):
            if member not in entry:
                raise AnchorError(f"{where}: missing {member}")
        impl = _hex(
            entry["implementation-id"], IMPLEMENTATION_ID_SIZE, f"{where} implementation-id"
        )
        inst = _hex(entry["instance-id"], INSTANCE_ID_SIZE, f"{where} instance-id")
        key = public_key(entry["pkey"], f"{where} pkey")
        if (impl, inst) in anchors:
            raise AnchorError(f"{where}: a second entry for the same implementation and instance")
        anchors[(impl, inst)] = TrustAnchor(impl, inst, key, where)
    return AnchorStore(anchors)


def load_store(path: Path) -> AnchorStore:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnchorError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_store(data, str(path))


def load_cpak(path: Path) -> AnchorStore:
    """One CPAK file (PEM or JWK), trusted for any platform that signs with it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnchorError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    text = data.decode("utf-8", "replace")
    key = public_key(text, str(path))
    return AnchorStore(bare=(TrustAnchor(None, None, key, str(path)),))


def jwk_of(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK of an EC key (for the simulator's trust-anchor file)."""
    names = {c.name: n for n, c in _CURVES.items()}
    size = (key.curve.key_size + 7) // 8
    numbers = key.public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": names[key.curve.name], "x": b64(numbers.x), "y": b64(numbers.y)}
