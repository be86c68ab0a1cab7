"""``SEQUENCE { OCTET STRING }``: the CSR evidence value of a TEE whose evidence is one blob.

A SEQUENCE rather than the bare blob, so that a format can grow optional fields
(endorsements, collateral) later without a new OID. Decoding is strict DER.
"""

from __future__ import annotations

from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ

from donjon.attestation.errors import MalformedEvidenceError


class _Wrapped(univ.Sequence):
    componentType = namedtype.NamedTypes(namedtype.NamedType("value", univ.OctetString()))


def wrap(blob: bytes) -> bytes:
    value = _Wrapped()
    value["value"] = blob
    return bytes(encoder.encode(value))


def unwrap(data: bytes, what: str) -> bytes:
    """The blob inside; ``what`` names the format in errors (e.g. "CCA evidence")."""
    try:
        value, rest = decoder.decode(data, asn1Spec=_Wrapped())
    except PyAsn1Error as exc:
        raise MalformedEvidenceError(f"{what}: not valid DER ({str(exc)[:80]})") from exc
    if rest:
        raise MalformedEvidenceError(f"{what}: {len(rest)} trailing bytes")
    if bytes(encoder.encode(value)) != data:
        raise MalformedEvidenceError(f"{what}: not DER (a BER encoding was used)")
    return bytes(value["value"])
