"""The TDREPORT an Azure TDX HCL report holds, and its match with a TD quote's body.

A TDREPORT (Intel TDX Module ABI, ``TDREPORT_STRUCT``, 1024 bytes) is MAC'd for
the local platform only: it proves nothing remotely. Azure turns it into a
quote through IMDS (``/acc/tdquote``); the quote is what the DCAP verifier
judges, and this module checks that the quote describes this very TDREPORT.

Offsets used (bytes)::

    REPORTMACSTRUCT   0   report_type (type 0x81 = TDX), cpusvn 16, tee_tcb_info_hash 32,
                          tee_info_hash 80, report_data 128 (64), mac 224 (32)
    TEE_TCB_INFO    256   valid 256, tee_tcb_svn 264, mrseam 280, mrsignerseam 328,
                          attributes 376
    TDINFO          512   attributes 512, xfam 520, mrtd 528, mrconfigid 576, mrowner 624,
                          mrownerconfig 672, rtmr0..3 720..912

A TD quote v4/v5 body (TD report body, Intel DCAP quote format) carries the same
values at: tee_tcb_svn 0, mrseam 16, mrsignerseam 64, seam attributes 112, td
attributes 120, xfam 128, mrtd 136, mrconfigid 184, mrowner 232, mrownerconfig
280, rtmr0..3 328..520, report_data 520.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from donjon.attestation.errors import HclReportError, TdReportMismatchError, TpmQuoteFormatError

TD_REPORT_SIZE = 1024
REPORT_TYPE_TDX = 0x81
QUOTE_HEADER_SIZE = 48
TEE_TYPE_TDX = 0x81
TD_BODY_SIZE = 584

#: name -> (offset in the TDREPORT, offset in the quote body, size)
_FIELDS: dict[str, tuple[int, int, int]] = {
    "tee_tcb_svn": (264, 0, 16),
    "mrseam": (280, 16, 48),
    "mrsignerseam": (328, 64, 48),
    "td_attributes": (512, 120, 8),
    "xfam": (520, 128, 8),
    "mrtd": (528, 136, 48),
    "mrconfigid": (576, 184, 48),
    "mrowner": (624, 232, 48),
    "mrownerconfig": (672, 280, 48),
    "rtmr0": (720, 328, 48),
    "rtmr1": (768, 376, 48),
    "rtmr2": (816, 424, 48),
    "rtmr3": (864, 472, 48),
    "report_data": (128, 520, 64),
}


@dataclass(frozen=True)
class TdReport:
    raw: bytes
    fields: dict[str, bytes]

    @property
    def report_data(self) -> bytes:
        return self.fields["report_data"]

    @property
    def mrtd(self) -> bytes:
        return self.fields["mrtd"]

    def to_dict(self) -> dict[str, Any]:
        return {name: value.hex() for name, value in self.fields.items()}


def parse_td_report(data: bytes) -> TdReport:
    if len(data) != TD_REPORT_SIZE:
        raise HclReportError(f"TDREPORT: {len(data)} bytes, expected {TD_REPORT_SIZE}")
    if data[0] != REPORT_TYPE_TDX:
        raise HclReportError(f"TDREPORT: report type 0x{data[0]:02x} is not TDX (0x81)")
    fields = {name: data[off : off + size] for name, (off, _, size) in _FIELDS.items()}
    return TdReport(raw=data, fields=fields)


def quote_body(quote: bytes) -> bytes:
    """The TD report body of a v4 or v5 TDX quote (structure only; DCAP judges the rest)."""
    if len(quote) < QUOTE_HEADER_SIZE + 6:
        raise TpmQuoteFormatError(f"TD quote: {len(quote)} bytes is too short")
    version, _key_type, tee_type = struct.unpack_from("<HHI", quote)
    if tee_type != TEE_TYPE_TDX:
        raise TpmQuoteFormatError(f"TD quote: TEE type 0x{tee_type:x} is not TDX (0x81)")
    if version == 4:
        start = QUOTE_HEADER_SIZE
    elif version == 5:
        start = QUOTE_HEADER_SIZE + 6  # body type u16, body size u32
    else:
        raise TpmQuoteFormatError(f"TD quote: version {version} is not 4 or 5")
    if len(quote) < start + TD_BODY_SIZE:
        raise TpmQuoteFormatError(f"TD quote: {len(quote)} bytes is too short for its body")
    return quote[start : start + TD_BODY_SIZE]


def check_quote_matches(report: TdReport, quote: bytes) -> str:
    """Every measured field of the quote equals the TDREPORT's; the reason, or an error."""
    body = quote_body(quote)
    differ = [
        name
        for name, (_, off, size) in _FIELDS.items()
        if body[off : off + size] != report.fields[name]
    ]
    if differ:
        raise TdReportMismatchError(
            "the TD quote is not of the HCL report's TDREPORT: "
            + ", ".join(differ[:4])
            + (" ..." if len(differ) > 4 else "")
            + " differ"
        )
    return "the TD quote's MRTD, RTMRs, SEAM and report_data are the HCL report's TDREPORT"
