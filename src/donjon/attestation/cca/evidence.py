"""The CSR evidence extension for Arm CCA (``oids.EVIDENCE_CCA``)::

    CcaEvidence ::= SEQUENCE {
        token  OCTET STRING }   -- the CCA attestation token (CBOR tag 399), as the
                                -- RMM returned it; its realm challenge is report_data

A SEQUENCE rather than the bare token, so that endorsements (a CPAK
certificate, say) can follow later as optional fields.
"""

from __future__ import annotations

from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ

from donjon.attestation.errors import MalformedEvidenceError


class _CcaEvidence(univ.Sequence):
    componentType = namedtype.NamedTypes(namedtype.NamedType("token", univ.OctetString()))


def encode_cca_evidence(token: bytes) -> bytes:
    value = _CcaEvidence()
    value["token"] = token
    return bytes(encoder.encode(value))


def decode_cca_evidence(data: bytes) -> bytes:
    """The token inside the extension value, after a strict DER decode."""
    try:
        value, rest = decoder.decode(data, asn1Spec=_CcaEvidence())
    except PyAsn1Error as exc:
        raise MalformedEvidenceError(f"CCA evidence: not valid DER ({str(exc)[:80]})") from exc
    if rest:
        raise MalformedEvidenceError(f"CCA evidence: {len(rest)} trailing bytes")
    if bytes(encoder.encode(value)) != data:
        raise MalformedEvidenceError("CCA evidence: not DER (a BER encoding was used)")
    return bytes(value["token"])
