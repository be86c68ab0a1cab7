"""Donjon's TDX evidence extension (``oids.EVIDENCE_TDX``; also the sim's TDX product)::

    TdxEvidence ::= SEQUENCE {
        quote       OCTET STRING,                    -- DCAP quote v4 or v5, PCK chain inside
        collateral  [0] IMPLICIT OCTET STRING OPTIONAL }
                    -- QuoteCollateralV3 JSON (Phala dcap-qvl's layout): TCB Info, QE Identity,
                    -- CRLs, issuer chains; a Keep on real hardware usually sends none

Decoding is strict: trailing bytes, another shape or a malformed collateral
document are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ

from donjon.attestation.dcap.collateral import CollateralBundle, parse_bundle
from donjon.attestation.dcap.store import Pool
from donjon.attestation.errors import MalformedEvidenceError


class _TdxEvidence(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("quote", univ.OctetString()),
        namedtype.OptionalNamedType(
            "collateral",
            univ.OctetString().subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0)
            ),
        ),
    )


@dataclass(frozen=True)
class TdxEvidence:
    quote: bytes
    collateral: CollateralBundle | None = None

    def pools(self) -> tuple[Pool, ...]:
        if self.collateral is None:
            return ()
        return (Pool.of_bundle(self.collateral, "the evidence", explicit=True),)


def decode_tdx_evidence(data: bytes) -> TdxEvidence:
    try:
        value, rest = decoder.decode(data, asn1Spec=_TdxEvidence())
    except PyAsn1Error as exc:
        raise MalformedEvidenceError(f"TDX evidence: not valid DER ({str(exc)[:80]})") from exc
    if rest:
        raise MalformedEvidenceError(f"TDX evidence: {len(rest)} trailing bytes")
    collateral = None
    if value["collateral"].isValue:
        collateral = parse_bundle(bytes(value["collateral"]), "the evidence's collateral")
    return TdxEvidence(bytes(value["quote"]), collateral)


def encode_tdx_evidence(quote: bytes, collateral: CollateralBundle | None = None) -> bytes:
    value = _TdxEvidence()
    value["quote"] = quote
    if collateral is not None:
        value["collateral"] = collateral.to_bytes()
    return bytes(encoder.encode(value))
