"""Enarx's SGX evidence extension (``1.3.6.1.4.1.58270.1.2``), decoded strictly::

    SgxEvidence ::= SEQUENCE {
        quote    OCTET STRING,                       -- DCAP quote v3
        crls     CrlList,                            -- Intel root and PCK CA CRLs
        tcb      TcbPackage }
    CrlList    ::= SEQUENCE { SEQUENCE OF SEQUENCE { url UTF8String, crl CertificateList } }
    TcbPackage ::= SEQUENCE { certs SEQUENCE OF Certificate,   -- [TCB Signing, Root CA]
                              tcbInfo OCTET STRING }          -- PCS body {"tcbInfo", "signature"}

A Donjon SGX Keep sends the same shape with no CRLs and an empty TCB package
(the Steward then finds collateral itself). Enarx never carried QE Identity.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, univ

from donjon.attestation.dcap.collateral import Signed, load_crl, signed_from_pcs
from donjon.attestation.dcap.store import Pool
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.x509util import load_certificate


class _CrlEntry(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("url", char.UTF8String()),
        namedtype.NamedType("crl", univ.Any()),
    )


class _CrlEntries(univ.SequenceOf):
    componentType = _CrlEntry()


class _CrlList(univ.Sequence):
    componentType = namedtype.NamedTypes(namedtype.NamedType("crls", _CrlEntries()))


class _Certs(univ.SequenceOf):
    componentType = univ.Any()


class _TcbPackage(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("certs", _Certs()),
        namedtype.NamedType("tcbInfo", univ.OctetString()),
    )


class _EnarxSgx(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("quote", univ.OctetString()),
        namedtype.NamedType("crls", _CrlList()),
        namedtype.NamedType("tcb", _TcbPackage()),
    )


@dataclass(frozen=True)
class SgxEvidence:
    quote: bytes
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    certs: tuple[x509.Certificate, ...] = ()
    tcb_info: Signed | None = None

    def pools(self) -> tuple[Pool, ...]:
        if not (self.crls or self.certs or self.tcb_info):
            return ()
        signed = (self.tcb_info,) if self.tcb_info is not None else ()
        return (Pool("the evidence", signed, self.crls, self.certs, explicit=True),)


def decode_enarx_sgx(data: bytes) -> SgxEvidence:
    try:
        value, rest = decoder.decode(data, asn1Spec=_EnarxSgx())
    except PyAsn1Error as exc:
        raise MalformedEvidenceError(
            f"Enarx SGX evidence: not valid DER ({str(exc)[:80]})"
        ) from exc
    if rest:
        raise MalformedEvidenceError(f"Enarx SGX evidence: {len(rest)} trailing bytes")
    crls = tuple(
        load_crl(bytes(entry["crl"]), f"Enarx SGX evidence CRL {str(entry['url'])[:80]}")
        for entry in value["crls"]["crls"]
    )
    certs = tuple(
        load_certificate(bytes(c), what="Enarx SGX evidence TCB certificate")
        for c in value["tcb"]["certs"]
    )
    raw = bytes(value["tcb"]["tcbInfo"])
    tcb_info = signed_from_pcs(raw, certs, "tcb_info", "the evidence") if raw else None
    return SgxEvidence(bytes(value["quote"]), crls, certs, tcb_info)


def encode_enarx_sgx(
    quote: bytes,
    crls: tuple[tuple[str, x509.CertificateRevocationList], ...] = (),
    certs: tuple[x509.Certificate, ...] = (),
    tcb_info: bytes = b"",
) -> bytes:
    """Enarx's SGX extension value (for Keeps and tests)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    entries = _CrlEntries()
    for i, (url, crl) in enumerate(crls):
        entry = _CrlEntry()
        entry["url"] = url
        entry["crl"] = univ.Any(crl.public_bytes(Encoding.DER))
        entries[i] = entry
    crl_list = _CrlList()
    crl_list["crls"] = entries
    package = _TcbPackage()
    cert_list = _Certs()
    for i, cert in enumerate(certs):
        cert_list[i] = univ.Any(cert.public_bytes(Encoding.DER))
    package["certs"] = cert_list
    package["tcbInfo"] = tcb_info
    value = _EnarxSgx()
    value["quote"] = quote
    value["crls"] = crl_list
    value["tcb"] = package
    return bytes(encoder.encode(value))
