"""DER formats of the CSR evidence extensions: decode (strictly) and encode.

* Enarx SNP ``1.3.6.1.4.1.58270.1.3``::

      SEQUENCE { SEQUENCE { vcek Certificate, CrlList }, report OCTET STRING }
      CrlList ::= SEQUENCE { SEQUENCE OF SEQUENCE { url UTF8String, crl CertificateList } }

* Donjon sim (``EVIDENCE_SIM``)::

      SEQUENCE { certs SEQUENCE OF Certificate -- [vcek, ask, ark], report OCTET STRING }

* Donjon nil: DER ``NULL``; Enarx KVM: empty (DER ``NULL`` is accepted too).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import char, namedtype, univ

from donjon.attestation.der import DECODE_ERRORS
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.snp.verify import SnpEvidence
from donjon.attestation.x509util import (
    X509_LOAD_ERRORS,
    load_certificate,
    quiet_serials,
    touch_crl,
)

DER_NULL = b"\x05\x00"


class _CrlEntry(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("url", univ.Any()),
        namedtype.NamedType("crl", univ.Any()),
    )


class _CrlEntries(univ.SequenceOf):
    componentType = _CrlEntry()


class _CrlList(univ.Sequence):
    componentType = namedtype.NamedTypes(namedtype.NamedType("crls", _CrlEntries()))


class _SnpCerts(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("vcek", univ.Any()),
        namedtype.NamedType("crl", _CrlList()),
    )


class _EnarxSnp(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("crts", _SnpCerts()),
        namedtype.NamedType("report", univ.OctetString()),
    )


class _CertList(univ.SequenceOf):
    componentType = univ.Any()


class _SimEvidence(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("certs", _CertList()),
        namedtype.NamedType("report", univ.OctetString()),
    )


def _decode(data: bytes, spec: univ.Sequence, what: str) -> univ.Sequence:
    try:
        value, rest = decoder.decode(data, asn1Spec=spec)
    except DECODE_ERRORS as exc:
        raise MalformedEvidenceError(f"{what}: not valid DER ({str(exc)[:80]})") from exc
    if rest:
        raise MalformedEvidenceError(f"{what}: {len(rest)} trailing bytes after the evidence")
    return value


def _crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    with quiet_serials():
        try:
            crl = x509.load_der_x509_crl(data)
        except X509_LOAD_ERRORS as exc:
            raise MalformedEvidenceError(f"{what}: CRL is not valid DER") from exc
    return touch_crl(crl, what)


def decode_enarx_snp(data: bytes) -> SnpEvidence:
    value = _decode(data, _EnarxSnp(), "Enarx SNP evidence")
    vcek = load_certificate(bytes(value["crts"]["vcek"]), what="Enarx SNP evidence VCEK")
    crls = tuple(
        _crl(bytes(entry["crl"]), "Enarx SNP evidence") for entry in value["crts"]["crl"]["crls"]
    )
    return SnpEvidence(report=bytes(value["report"]), endorsement=vcek, crls=crls)


def decode_sim(data: bytes) -> SnpEvidence:
    value = _decode(data, _SimEvidence(), "sim evidence")
    certs = [load_certificate(bytes(c), what="sim evidence") for c in value["certs"]]
    if len(certs) != 3:
        raise MalformedEvidenceError(f"sim evidence: expected [vcek, ask, ark], got {len(certs)}")
    vcek, ask, ark = certs
    return SnpEvidence(
        report=bytes(value["report"]), endorsement=vcek, intermediates=(ask,), ark=ark
    )


def check_nil(data: bytes) -> None:
    if data != DER_NULL:
        raise MalformedEvidenceError("nil evidence must be DER NULL (05 00)")


def check_kvm(data: bytes) -> None:
    if data not in (b"", DER_NULL):
        raise MalformedEvidenceError("KVM evidence must be empty")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def encode_enarx_snp(
    report: bytes,
    vcek: x509.Certificate,
    crls: Sequence[tuple[str, x509.CertificateRevocationList]] = (),
) -> bytes:
    """Build the Enarx SNP extension value (for Keeps and tests)."""
    entries = _CrlEntries()
    for i, (url, crl) in enumerate(crls):
        entry = _CrlEntry()
        entry["url"] = univ.Any(encoder.encode(char.UTF8String(url)))
        entry["crl"] = univ.Any(crl.public_bytes(Encoding.DER))
        entries[i] = entry
    crl_list = _CrlList()
    crl_list["crls"] = entries
    certs = _SnpCerts()
    certs["vcek"] = univ.Any(_der(vcek))
    certs["crl"] = crl_list
    value = _EnarxSnp()
    value["crts"] = certs
    value["report"] = report
    return bytes(encoder.encode(value))


def encode_sim(
    report: bytes, vcek: x509.Certificate, ask: x509.Certificate, ark: x509.Certificate
) -> bytes:
    """Build the Donjon sim extension value: ``SEQUENCE { [vcek, ask, ark], report }``."""
    certs = _CertList()
    for i, cert in enumerate((vcek, ask, ark)):
        certs[i] = univ.Any(_der(cert))
    value = _SimEvidence()
    value["certs"] = certs
    value["report"] = report
    return bytes(encoder.encode(value))
