"""The CSR evidence extension for AWS Nitro Enclaves (``oids.EVIDENCE_NITRO``)::

NitroEvidence ::= SEQUENCE {
    document  OCTET STRING }   -- the NSM attestation document (COSE_Sign1) as returned;
                               -- its user_data is report_data (64 bytes)
"""

from __future__ import annotations

from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ

from donjon.attestation.errors import MalformedEvidenceError


class _NitroEvidence(univ.Sequence):
    componentType = namedtype.NamedTypes(namedtype.NamedType("document", univ.OctetString()))


def encode_nitro_evidence(document: bytes) -> bytes:
    value = _NitroEvidence()
    value["document"] = document
    return bytes(encoder.encode(value))


def decode_nitro_evidence(data: bytes) -> bytes:
    try:
        value, rest = decoder.decode(data, asn1Spec=_NitroEvidence())
    except PyAsn1Error as exc:
        raise MalformedEvidenceError(f"Nitro evidence: not valid DER ({str(exc)[:80]})") from exc
    if rest:
        raise MalformedEvidenceError(f"Nitro evidence: {len(rest)} trailing bytes")
    if bytes(encoder.encode(value)) != data:
        raise MalformedEvidenceError("Nitro evidence: not DER (a BER encoding was used)")
    return bytes(value["document"])
