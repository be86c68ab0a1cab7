"""Azure evidence as it travels: Donjon's CSR extension, and Trustee's JSON forms.

Donjon's extension (``oids.EVIDENCE_AZURE``, ``docs/extensions.md``)::

    AzureEvidence ::= SEQUENCE {
        version       INTEGER (1),
        hclReport     OCTET STRING,              -- vTPM NV 0x01400001, as read
        attest        OCTET STRING,              -- the quote's TPMS_ATTEST, as signed
        signature     OCTET STRING,              -- its TPMT_SIGNATURE (RSASSA, SHA-256)
        pcrs          SEQUENCE OF OCTET STRING,  -- the quoted SHA-256 PCRs, in selection order
        certificates  [0] IMPLICIT SEQUENCE OF Certificate OPTIONAL,
                                                 -- SNP: VCEK first, then ASK and ARK
        tdQuote       [1] IMPLICIT OCTET STRING OPTIONAL }
                                                 -- TDX: the quote IMDS made of the TDREPORT

Trustee (confidential-containers) sends ``az-snp-vtpm`` / ``az-tdx-vtpm``
evidence as JSON: ``{"version": 1, "hcl_report", "tpm_quote": {"message",
"signature", "pcrs"}, "vcek" | "td_quote"}`` (bytes as base64, the quote's as
hex), or the older ``{"report": [...], "quote": {...}, "vcek": PEM}`` with byte
arrays. Both are read strictly: an unknown field or version is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ

from donjon.attestation.azure.tpm import encode_rsassa_signature
from donjon.attestation.errors import MalformedEvidenceError, UnsupportedVersionError
from donjon.attestation.x509util import load_certificate, load_certificates

EVIDENCE_VERSION = 1
MAX_PCRS = 64
MAX_CERTS = 4
#: Far above a real HCL report (2600 bytes) or TD quote (~5 KiB); bounds what is decoded.
MAX_BLOB = 64 * 1024


class _Pcrs(univ.SequenceOf):
    componentType = univ.OctetString()


class _Certs(univ.SequenceOf):
    componentType = univ.Any()


def _context(number: int, fmt: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, fmt, number)


class _AzureEvidence(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("hclReport", univ.OctetString()),
        namedtype.NamedType("attest", univ.OctetString()),
        namedtype.NamedType("signature", univ.OctetString()),
        namedtype.NamedType("pcrs", _Pcrs()),
        namedtype.OptionalNamedType(
            "certificates",
            _Certs().subtype(implicitTag=_context(0, tag.tagFormatConstructed)),
        ),
        namedtype.OptionalNamedType(
            "tdQuote", univ.OctetString().subtype(implicitTag=_context(1, tag.tagFormatSimple))
        ),
    )


@dataclass(frozen=True)
class TpmQuote:
    """A vTPM quote as sent: the signed TPMS_ATTEST, its TPMT_SIGNATURE, the PCR values."""

    attest: bytes
    signature: bytes
    pcrs: tuple[bytes, ...]


@dataclass(frozen=True)
class AzureEvidence:
    hcl_report: bytes
    quote: TpmQuote | None
    #: SNP: the VCEK (first) and whatever chain came with it; empty for TDX.
    certificates: tuple[x509.Certificate, ...] = ()
    td_quote: bytes | None = None


def encode_azure_evidence(evidence: AzureEvidence) -> bytes:
    """The CSR extension value (for Keeps and tests)."""
    if evidence.quote is None:
        raise ValueError("Donjon's Azure evidence always carries a TPM quote")
    value = _AzureEvidence()
    value["version"] = EVIDENCE_VERSION
    value["hclReport"] = evidence.hcl_report
    value["attest"] = evidence.quote.attest
    value["signature"] = evidence.quote.signature
    pcrs = _Pcrs()
    for i, pcr in enumerate(evidence.quote.pcrs):
        pcrs[i] = pcr
    value["pcrs"] = pcrs
    if evidence.certificates:
        certs = _Certs().subtype(implicitTag=_context(0, tag.tagFormatConstructed))
        for i, cert in enumerate(evidence.certificates):
            certs[i] = univ.Any(cert.public_bytes(Encoding.DER))
        value["certificates"] = certs
    if evidence.td_quote is not None:
        value["tdQuote"] = evidence.td_quote
    return bytes(encoder.encode(value))


def decode_azure_evidence(data: bytes) -> AzureEvidence:
    try:
        value, rest = decoder.decode(data, asn1Spec=_AzureEvidence())
    except PyAsn1Error as exc:
        raise MalformedEvidenceError(f"Azure evidence: not valid DER ({str(exc)[:80]})") from exc
    if rest:
        raise MalformedEvidenceError(f"Azure evidence: {len(rest)} trailing bytes")
    version = int(value["version"])
    if version != EVIDENCE_VERSION:
        raise UnsupportedVersionError(
            f"Azure evidence: version {version} is unknown (this Donjon reads 1)"
        )
    pcrs = tuple(bytes(p) for p in value["pcrs"])
    if len(pcrs) > MAX_PCRS:
        raise MalformedEvidenceError(f"Azure evidence: {len(pcrs)} PCR values (at most 64)")
    certs: tuple[x509.Certificate, ...] = ()
    if value["certificates"].isValue:
        items = list(value["certificates"])
        if len(items) > MAX_CERTS:
            raise MalformedEvidenceError(f"Azure evidence: {len(items)} certificates (at most 4)")
        certs = tuple(
            load_certificate(bytes(c), what=f"Azure evidence certificate {i}")
            for i, c in enumerate(items)
        )
    td_quote = bytes(value["tdQuote"]) if value["tdQuote"].isValue else None
    quote = TpmQuote(bytes(value["attest"]), bytes(value["signature"]), pcrs)
    return AzureEvidence(bytes(value["hclReport"]), quote, certs, td_quote)


# --- Trustee's JSON ------------------------------------------------------------------------

_TRUSTEE_V1 = {"version", "hcl_report", "tpm_quote", "vcek", "td_quote"}
_TRUSTEE_LEGACY = {"report", "quote", "vcek"}
_QUOTE_FIELDS = {"message", "signature", "pcrs"}


def _fail(message: str) -> MalformedEvidenceError:
    return MalformedEvidenceError(f"Trustee Azure evidence: {message}")


def _int_bytes(value: list[Any], field: str) -> bytes:
    if len(value) > MAX_BLOB or not all(
        type(b) is int and 0 <= b <= 255 for b in value
    ):
        raise _fail(f"{field} is not a list of bytes")
    return bytes(value)


def _b64(value: Any, field: str) -> bytes:
    """Bytes given as base64 (standard or url-safe, padded or not) or a list of ints."""
    if isinstance(value, list):
        return _int_bytes(value, field)
    if not isinstance(value, str) or len(value) > 2 * MAX_BLOB:
        raise _fail(f"{field} must be base64 text or a byte list")
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"{field} is not base64") from exc


def _hex(value: Any, field: str) -> bytes:
    """Bytes given as hex or a list of ints (the quote's fields)."""
    if isinstance(value, list):
        return _int_bytes(value, field)
    if not isinstance(value, str) or len(value) > 2 * MAX_BLOB:
        raise _fail(f"{field} must be hex text or a byte list")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise _fail(f"{field} is not hex") from exc


def parse_trustee_quote(value: Any, where: str = "tpm_quote") -> TpmQuote:
    """Trustee's ``{"message", "signature", "pcrs"}``: a TPMS_ATTEST, an RSASSA signature."""
    if not isinstance(value, dict) or set(value) != _QUOTE_FIELDS:
        raise _fail(f"{where} must have exactly message, signature and pcrs")
    pcrs = value["pcrs"]
    if not isinstance(pcrs, list) or len(pcrs) > MAX_PCRS:
        raise _fail(f"{where}.pcrs must be a list of at most {MAX_PCRS} values")
    return TpmQuote(
        attest=_hex(value["message"], f"{where}.message"),
        signature=encode_rsassa_signature(_hex(value["signature"], f"{where}.signature")),
        pcrs=tuple(_hex(p, f"{where}.pcrs[{i}]") for i, p in enumerate(pcrs)),
    )


def _vcek(value: Any) -> tuple[x509.Certificate, ...]:
    if not isinstance(value, str):
        raise _fail("vcek must be a PEM or base64 DER certificate")
    if "-----BEGIN" in value:
        return tuple(load_certificates(value.encode(), what="Trustee vcek"))
    return (load_certificate(_b64(value, "vcek"), what="Trustee vcek"),)


def load_json(data: bytes, what: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise MalformedEvidenceError(f"{what}: a field appears twice")
        return dict(pairs)

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvidenceError(f"{what}: not JSON ({str(exc)[:80]})") from exc


def parse_trustee_evidence(data: bytes) -> AzureEvidence:
    """Trustee's az-snp-vtpm or az-tdx-vtpm evidence JSON."""
    doc = load_json(data, "Trustee Azure evidence")
    if not isinstance(doc, dict):
        raise _fail("not a JSON object")
    if "hcl_report" in doc:
        unknown = sorted(set(doc) - _TRUSTEE_V1)
        if unknown:
            raise _fail(f"unknown field {unknown[0]!r}")
        if doc.get("version") != EVIDENCE_VERSION:
            raise UnsupportedVersionError(
                f"Trustee Azure evidence: version {doc.get('version')!r} is unknown (known: 1)"
            )
        if "tpm_quote" not in doc:
            raise _fail("no tpm_quote")
        report, quote = doc["hcl_report"], doc["tpm_quote"]
    else:
        if set(doc) != _TRUSTEE_LEGACY:
            raise _fail("expected hcl_report/tpm_quote (v1) or report/quote/vcek (legacy)")
        report, quote = doc["report"], doc["quote"]
    if "vcek" in doc and "td_quote" in doc:
        raise _fail("carries both a VCEK (SNP) and a TD quote (TDX)")
    return AzureEvidence(
        hcl_report=_b64(report, "hcl_report"),
        quote=parse_trustee_quote(quote),
        certificates=_vcek(doc["vcek"]) if "vcek" in doc else (),
        td_quote=_b64(doc["td_quote"], "td_quote") if "td_quote" in doc else None,
    )


def sniff_trustee(data: bytes) -> bytes | None:
    """Trustee Azure evidence JSON (recognised by its fields, not yet validated)."""
    if data.lstrip()[:1] != b"{":
        return None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(doc, dict) and ("hcl_report" in doc or {"report", "quote"} <= set(doc)):
        return data
    return None


def sniff_hcl_report(data: bytes) -> bytes | None:
    """An Azure HCL report, as read from the vTPM's NV index."""
    return data if data[:4] == b"HCLA" else None
