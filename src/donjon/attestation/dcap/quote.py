"""Typed model of Intel DCAP quotes (SGX v3, TDX v4 and v5): parse strictly, serialise exactly.

``parse_quote`` checks every length, version, code and reserved field before
any field is trusted; ``Quote.to_bytes`` is its exact inverse, so the simulated
TEE builds quotes field by field and signs ``signed_bytes()``.

Layout (all integers little-endian)::

    header (48) [v5: body type u16, body size u32] body (384 | 584 | 648)
    signature data length u32, then:
      signature (64) attestation key (64)
      v3:     QE report (384) QE report signature (64) QE auth data (u16 + n)
              certification data (u16 type, u32 size, data)
      v4, v5: certification data type 6 whose data is the v3 tail above

Bytes after the signature data are kept as ``trailing`` (quote buffers are
often zero-padded); the verifier decides what it accepts there.
"""

from __future__ import annotations

import operator
import struct
from dataclasses import dataclass, field
from typing import Any

from donjon.attestation.dcap import layout
from donjon.attestation.errors import (
    MalformedEvidenceError,
    ReservedFieldError,
    UnsupportedVersionError,
)

_HEADER = struct.Struct("<HHIHH16s20s")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class _Reader:
    """Bounds-checked reads that name the field and offset when the quote is too short."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    def take(self, size: int, what: str, within: str = "") -> bytes:
        """``size`` bytes; ``what`` (inside ``within``) names them only if they are missing."""
        end = self.pos + size
        if size < 0 or end > self.end:
            where = f"{within}: {what}" if within else what
            raise MalformedEvidenceError(
                f"quote: {where} at offset {self.pos:#x} needs {size} bytes, "
                f"{max(self.end - self.pos, 0)} left"
            )
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u16(self, what: str, within: str = "") -> int:
        value: int = _U16.unpack(self.take(2, what, within))[0]
        return value

    def u32(self, what: str, within: str = "") -> int:
        value: int = _U32.unpack(self.take(4, what, within))[0]
        return value


@dataclass(frozen=True)
class QuoteHeader:
    version: int
    att_key_type: int
    tee_type: int
    #: v3: the QE's and PCE's SVN; v4 and v5: reserved, zero.
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    def to_bytes(self) -> bytes:
        return _HEADER.pack(
            self.version,
            self.att_key_type,
            self.tee_type,
            self.qe_svn,
            self.pce_svn,
            self.qe_vendor_id,
            self.user_data,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "att_key_type": self.att_key_type,
            "att_key": layout.KEY_NAMES.get(self.att_key_type, "unknown"),
            "tee_type": f"{self.tee_type:#x}",
            "tee": layout.TEE_NAMES.get(self.tee_type, "unknown"),
            "qe_vendor_id": self.qe_vendor_id.hex(),
            "user_data": self.user_data.hex(),
        }
        if self.version == 3:
            out["qe_svn"] = self.qe_svn
            out["pce_svn"] = self.pce_svn
        return out


def _u16(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


@dataclass(frozen=True)
class EnclaveReport:
    """An SGX enclave report body: the application enclave's, or the quoting enclave's."""

    cpusvn: bytes
    miscselect: bytes
    isv_ext_prod_id: bytes
    attributes: bytes
    mrenclave: bytes
    mrsigner: bytes
    config_id: bytes
    isvprodid: int
    isvsvn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes

    @property
    def flags(self) -> int:
        """ATTRIBUTES.FLAGS (``layout.SGX_FLAG_BITS``)."""
        return int.from_bytes(self.attributes[:8], "little")

    @property
    def xfrm(self) -> int:
        return int.from_bytes(self.attributes[8:], "little")

    @property
    def debug(self) -> bool:
        return bool(self.flags & layout.SGX_FLAG_BITS["DEBUG"])

    @property
    def miscselect_value(self) -> int:
        return int.from_bytes(self.miscselect, "little")

    def to_bytes(self) -> bytes:
        out = bytearray(layout.SGX_REPORT_SIZE)
        for name, offset, size in layout.SGX_FIELDS:
            if name.startswith("reserved"):
                continue
            value = getattr(self, name)
            raw = value.to_bytes(size, "little") if isinstance(value, int) else value
            if len(raw) != size:
                raise ValueError(f"enclave report {name} must be {size} bytes, got {len(raw)}")
            out[offset : offset + size] = raw
        return bytes(out)

    def to_dict(self) -> dict[str, Any]:
        flags = self.flags
        return {
            "cpusvn": self.cpusvn.hex(),
            "miscselect": self.miscselect.hex(),
            "attributes": self.attributes.hex(),
            "attributes_decoded": {
                "flags": f"{flags:#x}",
                "xfrm": f"{self.xfrm:#x}",
                **{name.lower(): bool(flags & bit) for name, bit in layout.SGX_FLAG_BITS.items()},
            },
            "mrenclave": self.mrenclave.hex(),
            "mrsigner": self.mrsigner.hex(),
            "isvprodid": self.isvprodid,
            "isvsvn": self.isvsvn,
            "isv_ext_prod_id": self.isv_ext_prod_id.hex(),
            "config_id": self.config_id.hex(),
            "config_svn": self.config_svn,
            "isv_family_id": self.isv_family_id.hex(),
            "report_data": self.report_data.hex(),
        }


_SGX_REPORT = struct.Struct("<" + "".join(
    "H" if name in ("isvprodid", "isvsvn", "config_svn") else f"{size}s"
    for name, _, size in layout.SGX_FIELDS
))  # fmt: skip
#: The non-reserved fields, in EnclaveReport's order (which is the layout's).
_SGX_KEPT = operator.itemgetter(
    *(i for i, (name, _, _) in enumerate(layout.SGX_FIELDS) if not name.startswith("reserved"))
)
_SGX_RESERVED = tuple(
    (i, offset, size) for i, (name, offset, size) in enumerate(layout.SGX_FIELDS)
    if name.startswith("reserved")
)  # fmt: skip


def parse_enclave_report(data: bytes, what: str) -> EnclaveReport:
    if len(data) != layout.SGX_REPORT_SIZE:
        raise MalformedEvidenceError(
            f"{what}: {len(data)} bytes, an SGX report body is {layout.SGX_REPORT_SIZE}"
        )
    values = _SGX_REPORT.unpack(data)
    for index, offset, size in _SGX_RESERVED:
        if any(values[index]):
            raise ReservedFieldError(
                f"{what}: reserved bytes {offset:#x}..{offset + size:#x} are not zero"
            )
    return EnclaveReport(*_SGX_KEPT(values))


@dataclass(frozen=True)
class TdReport:
    """A TD report body: TDX 1.0 (584 bytes), or TDX 1.5 (648) with its two extra fields."""

    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mrservicetd: bytes | None = None

    @property
    def is_td15(self) -> bool:
        return self.tee_tcb_svn2 is not None

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)

    @property
    def attributes(self) -> int:
        return int.from_bytes(self.td_attributes, "little")

    @property
    def xfam_value(self) -> int:
        return int.from_bytes(self.xfam, "little")

    @property
    def debug(self) -> bool:
        return bool(self.attributes & layout.TD_ATTRIBUTE_BITS["DEBUG"])

    def to_bytes(self) -> bytes:
        fields = layout.TD_FIELDS + (layout.TD15_FIELDS if self.is_td15 else ())
        size = layout.TD_REPORT15_SIZE if self.is_td15 else layout.TD_REPORT10_SIZE
        out = bytearray(size)
        for name, offset, length in fields:
            raw = getattr(self, name)
            if raw is None or len(raw) != length:
                raise ValueError(f"TD report {name} must be {length} bytes")
            out[offset : offset + length] = raw
        return bytes(out)

    def to_dict(self) -> dict[str, Any]:
        attrs = self.attributes
        out: dict[str, Any] = {name: getattr(self, name).hex() for name, _, _ in layout.TD_FIELDS}
        out["td_attributes_decoded"] = {
            "value": f"{attrs:#018x}",
            **{name.lower(): bool(attrs & bit) for name, bit in layout.TD_ATTRIBUTE_BITS.items()},
        }
        if self.is_td15:
            assert self.tee_tcb_svn2 is not None and self.mrservicetd is not None
            out["tee_tcb_svn2"] = self.tee_tcb_svn2.hex()
            out["mrservicetd"] = self.mrservicetd.hex()
        return out


_TD10 = struct.Struct("<" + "".join(f"{size}s" for _, _, size in layout.TD_FIELDS))
_TD15 = struct.Struct(_TD10.format + "".join(f"{size}s" for _, _, size in layout.TD15_FIELDS))


def parse_td_report(data: bytes, what: str) -> TdReport:
    if len(data) == layout.TD_REPORT10_SIZE:
        return TdReport(*_TD10.unpack(data))
    if len(data) == layout.TD_REPORT15_SIZE:
        return TdReport(*_TD15.unpack(data))
    raise MalformedEvidenceError(f"{what}: {len(data)} bytes is not a TD report body size")


@dataclass(frozen=True)
class CertificationData:
    """Certification data: a type code and its payload (type 5: the PCK chain in PEM)."""

    type: int
    data: bytes

    def to_bytes(self) -> bytes:
        return struct.pack("<HI", self.type, len(self.data)) + self.data

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "type_name": layout.CERT_TYPE_NAMES.get(self.type, "unknown"),
            "size": len(self.data),
        }


@dataclass(frozen=True)
class QeCertificationData:
    """The QE report certification data (type 6; inline in v3): the PCK-signed QE report."""

    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification: CertificationData
    #: The 384 signed bytes of the QE report, exactly as received.
    qe_report_raw: bytes = field(repr=False, default=b"")

    def to_bytes(self) -> bytes:
        report = self.qe_report_raw or self.qe_report.to_bytes()
        return (
            report
            + self.qe_report_signature
            + struct.pack("<H", len(self.qe_auth_data))
            + self.qe_auth_data
            + self.certification.to_bytes()
        )


@dataclass(frozen=True)
class Quote:
    header: QuoteHeader
    body: EnclaveReport | TdReport
    signature: bytes
    attestation_key: bytes
    qe: QeCertificationData
    #: v5 only: the body type (2 = TDX 1.0, 3 = TDX 1.5).
    body_type: int | None = None
    #: Bytes after the signature data (not part of the quote, never signed).
    trailing: bytes = b""
    #: The signed bytes exactly as parsed (empty for a quote built field by field).
    signed_raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def tee(self) -> str:
        return layout.TEE_NAMES[self.header.tee_type]

    @property
    def is_tdx(self) -> bool:
        return self.header.tee_type == layout.TEE_TDX

    @property
    def report_data(self) -> bytes:
        return self.body.report_data

    def signed_bytes(self) -> bytes:
        """What the attestation key signs: header, v5 body descriptor, body."""
        if self.signed_raw:
            return self.signed_raw
        body = self.body.to_bytes()
        head = self.header.to_bytes()
        if self.header.version == 5:
            assert self.body_type is not None
            head += struct.pack("<HI", self.body_type, len(body))
        return head + body

    def signature_data(self) -> bytes:
        tail = self.qe.to_bytes()
        if self.header.version != 3:
            tail = CertificationData(layout.CERT_QE_REPORT, tail).to_bytes()
        return self.signature + self.attestation_key + tail

    def to_bytes(self) -> bytes:
        sig = self.signature_data()
        return self.signed_bytes() + struct.pack("<I", len(sig)) + sig + self.trailing

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"header": self.header.to_dict()}
        if self.body_type is not None:
            out["body_type"] = self.body_type
            out["body_type_name"] = layout.BODY_NAMES.get(self.body_type, "unknown")
        out["body"] = self.body.to_dict()
        out["signature"] = self.signature.hex()
        out["attestation_key"] = self.attestation_key.hex()
        out["qe_report"] = self.qe.qe_report.to_dict()
        out["qe_report_signature"] = self.qe.qe_report_signature.hex()
        out["qe_auth_data"] = self.qe.qe_auth_data.hex()
        out["certification_data"] = self.qe.certification.to_dict()
        if self.trailing:
            out["trailing_bytes"] = len(self.trailing)
        return out


def parse_quote(data: bytes) -> Quote:
    """A DCAP quote, strictly: unknown versions, key types, TEE and body types are refused."""
    reader = _Reader(data)
    header = _parse_header(reader)
    body_type: int | None = None
    if header.version == 5:
        body_type = reader.u16("v5 body type")
        body_size = reader.u32("v5 body size")
        expected = layout.BODY_SIZES.get(body_type)
        if body_type not in (layout.BODY_TD10, layout.BODY_TD15):
            name = layout.BODY_NAMES.get(body_type, "unknown")
            raise UnsupportedVersionError(
                f"quote v5 body type {body_type} ({name}) is not supported: "
                "TDX quotes v5 carry body type 2 (TDX 1.0) or 3 (TDX 1.5)"
            )
        if body_size != expected:
            raise MalformedEvidenceError(
                f"quote v5 body type {body_type} must be {expected} bytes, "
                f"the quote says {body_size}"
            )
        body: EnclaveReport | TdReport = parse_td_report(
            reader.take(body_size, "TD report"), "TD report"
        )
    elif header.tee_type == layout.TEE_SGX:
        body = parse_enclave_report(
            reader.take(layout.SGX_REPORT_SIZE, "enclave report"), "enclave report"
        )
    else:
        body = parse_td_report(reader.take(layout.TD_REPORT10_SIZE, "TD report"), "TD report")
    sig_len = reader.u32("signature data length")
    sig_end = reader.pos + sig_len
    if sig_end > len(data):
        raise MalformedEvidenceError(
            f"quote: signature data length {sig_len} runs past the end "
            f"({len(data) - reader.pos} bytes left)"
        )
    sig = _Reader(data, reader.pos, sig_end)
    signature = sig.take(layout.SIGNATURE_SIZE, "quote signature")
    attestation_key = sig.take(layout.ATTESTATION_KEY_SIZE, "attestation key")
    if header.version == 3:
        qe = _parse_qe_cert_data(sig, "quote v3")
    else:
        outer_type = sig.u16("certification data type")
        outer_size = sig.u32("certification data size")
        if outer_type != layout.CERT_QE_REPORT:
            raise MalformedEvidenceError(
                f"quote v{header.version}: certification data type {outer_type} "
                f"({layout.CERT_TYPE_NAMES.get(outer_type, 'unknown')}); it must be type 6 "
                "(QE report certification data)"
            )
        inner = _Reader(data, sig.pos, sig.pos + outer_size)
        if inner.end != sig.end:
            raise MalformedEvidenceError(
                f"quote: certification data size {outer_size} does not fill the signature data "
                f"({sig.end - sig.pos} bytes left)"
            )
        qe = _parse_qe_cert_data(inner, "QE report certification data")
        sig.pos = inner.pos
    if sig.pos != sig.end:
        raise MalformedEvidenceError(
            f"quote: {sig.end - sig.pos} unexplained bytes at the end of the signature data"
        )
    return Quote(
        header=header,
        body=body,
        signature=signature,
        attestation_key=attestation_key,
        qe=qe,
        body_type=body_type,
        trailing=data[sig_end:],
        signed_raw=data[: sig_end - sig_len - 4],
    )


def _parse_header(reader: _Reader) -> QuoteHeader:
    raw = reader.take(layout.HEADER_SIZE, "header")
    header = QuoteHeader(*_HEADER.unpack(raw))
    if header.version not in (3, 4, 5):
        raise UnsupportedVersionError(
            f"quote version {header.version} is not supported (SGX: 3, TDX: 4 or 5)"
        )
    if header.tee_type not in layout.TEE_NAMES:
        raise UnsupportedVersionError(
            f"quote TEE type {header.tee_type:#x} is unknown (SGX is 0x0, TDX is 0x81)"
        )
    if header.version == 3 and header.tee_type != layout.TEE_SGX:
        raise UnsupportedVersionError("a version 3 quote must be an SGX quote (TEE type 0x0)")
    if header.version in (4, 5) and header.tee_type != layout.TEE_TDX:
        raise UnsupportedVersionError(
            f"an SGX quote of version {header.version} is not supported (SGX quotes are v3)"
        )
    if header.att_key_type != layout.KEY_ECDSA_P256:
        name = layout.KEY_NAMES.get(header.att_key_type, "unknown")
        raise UnsupportedVersionError(
            f"attestation key type {header.att_key_type} ({name}) is not supported: "
            "Donjon verifies ECDSA-256-with-P-256 quotes (type 2)"
        )
    if header.version != 3 and (header.qe_svn or header.pce_svn):
        raise ReservedFieldError(
            f"quote v{header.version} header: reserved bytes 8..12 are not zero"
        )
    return header


def _parse_qe_cert_data(reader: _Reader, what: str) -> QeCertificationData:
    raw_report = reader.take(layout.SGX_REPORT_SIZE, "QE report", what)
    qe_report = parse_enclave_report(raw_report, "QE report")
    qe_sig = reader.take(layout.SIGNATURE_SIZE, "QE report signature", what)
    auth_size = reader.u16("QE authentication data size", what)
    auth = reader.take(auth_size, "QE authentication data", what)
    cert_type = reader.u16("certification data type", what)
    cert_size = reader.u32("certification data size", what)
    if cert_type not in layout.CERT_TYPE_NAMES or cert_type == layout.CERT_QE_REPORT:
        raise MalformedEvidenceError(f"{what}: unknown certification data type {cert_type}")
    if reader.pos + cert_size != reader.end:
        raise MalformedEvidenceError(
            f"{what}: certification data size {cert_size} does not match the "
            f"{reader.end - reader.pos} bytes that follow"
        )
    cert = CertificationData(cert_type, reader.take(cert_size, "certification data", what))
    return QeCertificationData(qe_report, qe_sig, auth, cert, raw_report)
