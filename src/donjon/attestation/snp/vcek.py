"""The AMD extensions of a VCEK or VLEK certificate (OIDs ``1.3.6.1.4.1.3704.1.*``).

The endorsement key certifies one chip (``hwID``, VCEK) or one cloud provider
(``cspID``, VLEK) at one TCB. The verifier compares these values with the
report, so that a genuine key of another chip or another TCB is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from pyasn1.codec.der import decoder
from pyasn1.type import char, univ

from donjon.attestation.der import DECODE_ERRORS
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.snp.product import Product

_ARC = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = x509.ObjectIdentifier(f"{_ARC}.1")
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{_ARC}.2")
OID_BL_SPL = x509.ObjectIdentifier(f"{_ARC}.3.1")
OID_TEE_SPL = x509.ObjectIdentifier(f"{_ARC}.3.2")
OID_SNP_SPL = x509.ObjectIdentifier(f"{_ARC}.3.3")
OID_UCODE_SPL = x509.ObjectIdentifier(f"{_ARC}.3.8")
OID_FMC_SPL = x509.ObjectIdentifier(f"{_ARC}.3.9")
OID_HWID = x509.ObjectIdentifier(f"{_ARC}.4")
OID_CSP_ID = x509.ObjectIdentifier(f"{_ARC}.5")

_SPL_OIDS = {
    "bl": OID_BL_SPL,
    "tee": OID_TEE_SPL,
    "snp": OID_SNP_SPL,
    "ucode": OID_UCODE_SPL,
    "fmc": OID_FMC_SPL,
}


@dataclass(frozen=True)
class EndorsementKeyInfo:
    kind: str  # "VCEK" or "VLEK"
    struct_version: int | None
    product_name: str | None  # e.g. "Milan-B0"
    tcb: dict[str, int]  # bl, tee, snp, ucode (+ fmc on Turin)
    hwid: bytes | None  # VCEK only: 64 bytes (Milan/Genoa) or 8 bytes (Turin)
    csp_id: str | None  # VLEK only
    issuer_name: str = ""  # CN of the issuing ASK/ASVK, e.g. "SEV-Milan"

    @property
    def product(self) -> Product | None:
        return Product.parse(self.product_name) if self.product_name else None

    @property
    def issuer_product(self) -> Product | None:
        """``SEV-Milan`` / ``SEV-VLEK-Genoa`` -> the product line of the issuing key."""
        tail = self.issuer_name.rsplit("-", 1)[-1]
        return next((p for p in Product if p.value == tail), None)


def _ext_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    raise MalformedEvidenceError(f"endorsement key: extension {oid.dotted_string} is not raw")


def _integer(data: bytes, what: str) -> int:
    try:
        value, rest = decoder.decode(data, asn1Spec=univ.Integer())
    except DECODE_ERRORS as exc:
        raise MalformedEvidenceError(f"endorsement key: {what} is not a DER INTEGER") from exc
    if rest:
        raise MalformedEvidenceError(f"endorsement key: trailing bytes after {what}")
    number = int(value)
    if not 0 <= number <= 0xFF and what != "structVersion":
        raise MalformedEvidenceError(f"endorsement key: {what}={number} is not a byte")
    return number


def _ia5(data: bytes, what: str) -> str:
    try:
        value, rest = decoder.decode(data, asn1Spec=char.IA5String())
    except DECODE_ERRORS as exc:
        raise MalformedEvidenceError(f"endorsement key: {what} is not an IA5String") from exc
    if rest:
        raise MalformedEvidenceError(f"endorsement key: trailing bytes after {what}")
    return str(value)


def _hwid(data: bytes) -> bytes:
    """AMD stores the raw bytes; some producers wrap them in an OCTET STRING. Accept both."""
    if len(data) in (8, 64):
        return data
    if len(data) >= 2 and data[0] == 0x04 and data[1] == len(data) - 2 and data[1] in (8, 64):
        return data[2:]
    raise MalformedEvidenceError(f"endorsement key: hwID has an unexpected size ({len(data)})")


def endorsement_key_info(cert: x509.Certificate) -> EndorsementKeyInfo:
    """Read the AMD extensions; the subject CN says VCEK or VLEK."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    if common_name not in ("SEV-VCEK", "SEV-VLEK"):
        raise MalformedEvidenceError(
            f"endorsement key: subject CN is {common_name!r}, expected SEV-VCEK or SEV-VLEK"
        )
    kind = common_name.removeprefix("SEV-")
    tcb: dict[str, int] = {}
    for name, oid in _SPL_OIDS.items():
        raw = _ext_value(cert, oid)
        if raw is not None:
            tcb[name] = _integer(raw, f"{name}SPL")
    missing = [n for n in ("bl", "tee", "snp", "ucode") if n not in tcb]
    if missing:
        raise MalformedEvidenceError(f"endorsement key: missing TCB extensions {missing}")
    version_raw = _ext_value(cert, OID_STRUCT_VERSION)
    product_raw = _ext_value(cert, OID_PRODUCT_NAME)
    hwid_raw = _ext_value(cert, OID_HWID)
    csp_raw = _ext_value(cert, OID_CSP_ID)
    if kind == "VCEK" and hwid_raw is None:
        raise MalformedEvidenceError("endorsement key: VCEK without a hwID extension")
    if kind == "VLEK" and csp_raw is None:
        raise MalformedEvidenceError("endorsement key: VLEK without a cspID extension")
    return EndorsementKeyInfo(
        kind=kind,
        struct_version=_integer(version_raw, "structVersion") if version_raw else None,
        product_name=_ia5(product_raw, "productName") if product_raw else None,
        tcb=tcb,
        hwid=_hwid(hwid_raw) if hwid_raw is not None else None,
        csp_id=_ia5(csp_raw, "cspID") if csp_raw is not None else None,
        issuer_name=_issuer_cn(cert),
    )


def _issuer_cn(cert: x509.Certificate) -> str:
    names = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
