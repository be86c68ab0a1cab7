"""Strict CBOR decoding and COSE_Sign1 (RFC 9052) verification, for CCA tokens and Nitro.

Built on ``cbor2`` (decoding) and ``cryptography`` (ECDSA). A maintained COSE
library (pycose) was considered: it verifies ECDSA with the pure-Python
``ecdsa`` package, two orders of magnitude slower than OpenSSL, decodes only
tagged messages (Nitro documents are untagged) and accepts unknown header
parameters by default. COSE_Sign1 with ES256/384/512 is a few lines over
``cryptography``, so Donjon writes those lines and keeps them strict:

* CBOR must be well formed, definite-length, in preferred serialization, with
  no duplicate map keys and no trailing bytes: every value must re-encode to
  exactly the bytes that arrived (a parser differential cannot then hide a claim);
* the protected header names the algorithm and nothing this verifier does not
  understand (``crit`` is refused); the unprotected header may carry only a
  ``kid``;
* the signature is the raw ``r || s`` of the algorithm's curve, each in range.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation.errors import MalformedEvidenceError, SignatureError

#: The types cbor2 decodes a CBOR map to (a concrete check: ABC checks cost more).
CBOR_MAPS = (dict, cbor2.frozendict)
#: COSE_Sign1's CBOR tag (RFC 9052, section 4.2).
TAG_SIGN1 = 18
#: Header labels (RFC 9052, section 3.1).
HEADER_ALG = 1
HEADER_CRIT = 2
HEADER_CONTENT_TYPE = 3
HEADER_KID = 4


@dataclass(frozen=True)
class Algorithm:
    """An ECDSA algorithm of COSE: its curve, hash and raw signature size."""

    name: str
    cose_id: int
    curve: type[ec.EllipticCurve]
    hash: type[hashes.HashAlgorithm]
    size: int  # bytes of r (and of s)
    order: int


#: ES256, ES384 and ES512 (RFC 9053, section 2.1), by COSE algorithm id.
ALGORITHMS: dict[int, Algorithm] = {
    -7: Algorithm(
        "ES256",
        -7,
        ec.SECP256R1,
        hashes.SHA256,
        32,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
    -35: Algorithm(
        "ES384",
        -35,
        ec.SECP384R1,
        hashes.SHA384,
        48,
        int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
            "581A0DB248B0A77AECEC196ACCC52973",
            16,
        ),
    ),
    -36: Algorithm(
        "ES512",
        -36,
        ec.SECP521R1,
        hashes.SHA512,
        66,
        int(
            "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "FFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
            16,
        ),
    ),
}


def loads_strict(data: bytes, what: str) -> Any:
    """One CBOR item that is exactly ``data``: no trailing bytes, re-encodes identically."""
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise MalformedEvidenceError(f"{what}: not valid CBOR ({str(exc)[:80]})") from exc
    if stream.tell() != len(data):
        raise MalformedEvidenceError(
            f"{what}: {len(data) - stream.tell()} trailing bytes after the CBOR item"
        )
    try:
        again = cbor2.dumps(value)
    except (cbor2.CBORError, ValueError, TypeError) as exc:
        raise MalformedEvidenceError(f"{what}: CBOR cannot be re-encoded ({exc})") from exc
    if again != data:
        raise MalformedEvidenceError(
            f"{what}: CBOR is not in preferred serialization or repeats a map key "
            "(it does not re-encode to the same bytes)"
        )
    return value


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1: the bytes that are signed, and what signs them."""

    protected: bytes  # the protected header as it arrived (it is signed)
    algorithm: Algorithm
    kid: bytes | None
    payload: bytes
    signature: bytes

    def to_be_signed(self) -> bytes:
        """``Sig_structure`` for a COSE_Sign1 with no external AAD (RFC 9052, section 4.4)."""
        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])

    def verify(
        self,
        key: ec.EllipticCurvePublicKey,
        what: str,
        error: type[SignatureError] = SignatureError,
    ) -> None:
        """Raise ``error`` (a :class:`SignatureError`) unless ``key`` signed this message."""
        alg = self.algorithm
        if not isinstance(key.curve, alg.curve):
            raise error(
                f"{what}: {alg.name} needs a {alg.curve.name} key, the key is {key.curve.name}"
            )
        size = alg.size
        r = int.from_bytes(self.signature[:size], "big")
        s = int.from_bytes(self.signature[size:], "big")
        if not (0 < r < alg.order and 0 < s < alg.order):
            raise error(f"{what}: the signature is out of range for {alg.curve.name}")
        try:
            key.verify(encode_dss_signature(r, s), self.to_be_signed(), ec.ECDSA(alg.hash()))
        except InvalidSignature as exc:
            raise error(f"{what}: the {alg.name} signature does not verify") from exc


def decode_sign1(value: Any, what: str, *, tagged: bool | None) -> Sign1:
    """A COSE_Sign1 from an already decoded CBOR value.

    ``tagged``: True requires tag 18, False forbids it, None accepts both.
    """
    if isinstance(value, cbor2.CBORTag):
        if tagged is False:
            raise MalformedEvidenceError(f"{what}: expected an untagged COSE_Sign1")
        if value.tag != TAG_SIGN1:
            raise MalformedEvidenceError(
                f"{what}: CBOR tag {value.tag} is not COSE_Sign1 ({TAG_SIGN1})"
            )
        value = value.value
    elif tagged is True:
        raise MalformedEvidenceError(f"{what}: expected a COSE_Sign1 tagged {TAG_SIGN1}")
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise MalformedEvidenceError(f"{what}: a COSE_Sign1 is an array of 4 items")
    protected, unprotected, payload, signature = value
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise MalformedEvidenceError(
            f"{what}: the protected header and the payload must be byte strings"
        )
    if not isinstance(signature, bytes):
        raise MalformedEvidenceError(f"{what}: the signature must be a byte string")
    if not isinstance(unprotected, CBOR_MAPS):
        raise MalformedEvidenceError(f"{what}: the unprotected header must be a map")
    header = loads_strict(protected, f"{what} protected header") if protected else {}
    if not isinstance(header, CBOR_MAPS):
        raise MalformedEvidenceError(f"{what}: the protected header must be a map")
    unknown = sorted(
        str(k) for k in header if k not in (HEADER_ALG, HEADER_CONTENT_TYPE, HEADER_KID)
    )
    if unknown:
        raise MalformedEvidenceError(
            f"{what}: unknown protected header parameter(s) {', '.join(unknown)}"
        )
    unknown = sorted(str(k) for k in unprotected if k != HEADER_KID)
    if unknown:
        raise MalformedEvidenceError(
            f"{what}: unprotected header parameter(s) {', '.join(unknown)} "
            "(only kid may be unprotected)"
        )
    alg_id = header.get(HEADER_ALG)
    algorithm = ALGORITHMS.get(alg_id) if isinstance(alg_id, int) else None
    if algorithm is None:
        raise SignatureError(
            f"{what}: signature algorithm {alg_id!r} is not one of "
            + ", ".join(a.name for a in ALGORITHMS.values())
        )
    if len(signature) != 2 * algorithm.size:
        raise SignatureError(
            f"{what}: an {algorithm.name} signature is {2 * algorithm.size} bytes, "
            f"got {len(signature)}"
        )
    kid = header.get(HEADER_KID, unprotected.get(HEADER_KID))
    if kid is not None and not isinstance(kid, bytes):
        raise MalformedEvidenceError(f"{what}: kid must be a byte string")
    return Sign1(protected, algorithm, kid, payload, signature)


def sign1_encode(
    payload: bytes, key: ec.EllipticCurvePrivateKey, *, algorithm: int = -35, tagged: bool
) -> bytes:
    """Make a COSE_Sign1 (for the simulator and tests): ``{1: alg}`` protected, nothing else."""
    alg = ALGORITHMS[algorithm]
    if not isinstance(key.curve, alg.curve):
        raise ValueError(f"{alg.name} needs a {alg.curve.name} key")
    protected = cbor2.dumps({HEADER_ALG: algorithm})
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(alg.hash())))
    signature = r.to_bytes(alg.size, "big") + s.to_bytes(alg.size, "big")
    message = [protected, {}, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(TAG_SIGN1, message) if tagged else message)
