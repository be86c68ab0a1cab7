"""The HCL report: what Azure's paravisor writes into vTPM NV index ``0x01400001``.

Layout (little-endian ``u32`` fields; OpenHCL ``IgvmAttestRequest`` with request
type AK_CERT)::

    0x000  header        signature 'HCLA', version (1|2), report_size, request_type (2),
                         status (0), reserved[3] (0)
    0x020  hw report     1184 bytes: an SEV-SNP ATTESTATION_REPORT, or a 1024-byte TDX
                         TDREPORT padded with zeros
    0x4C0  request data  data_size, version (1), report_type (2 SNP | 4 TDX),
                         report_data_hash_type (1 = SHA-256), variable_data_size
    0x4D4  variable data the runtime-claims JSON (``variable_data_size`` bytes)

``report_size`` counts the bytes up to the end of the variable data; the NV
area after it is zero padding. The hardware report's ``report_data[0:32]`` is
SHA-256 of the variable data. Parsing is strict: an unknown version, request
type, report type or hash type is refused, and so are stray bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Any

from donjon.attestation.errors import HclReportError, UnsupportedVersionError

SIGNATURE = 0x414C4348  # b"HCLA" read as a little-endian u32
HEADER = struct.Struct("<8I")
HEADER_SIZE = HEADER.size  # 32
HW_REPORT_OFFSET = HEADER_SIZE
HW_REPORT_AREA = 1184  # the SNP report size; a TDREPORT is padded to it
REQUEST = struct.Struct("<5I")
REQUEST_OFFSET = HW_REPORT_OFFSET + HW_REPORT_AREA  # 0x4C0
VARIABLE_OFFSET = REQUEST_OFFSET + REQUEST.size  # 0x4D4
HEADER_VERSIONS = frozenset({1, 2})
REQUEST_TYPE_AK_CERT = 2
REQUEST_VERSION = 1
HASH_SHA256 = 1
_HASH_NAMES = {2: "SHA-384", 3: "SHA-512"}
TD_REPORT_SIZE = 1024
#: Far above any real runtime-claims JSON (about 1-2 KiB); bounds what is hashed and parsed.
MAX_VARIABLE_DATA = 64 * 1024
#: The NV index the HCL writes the report to, and where the vTPM's AK is persisted.
NV_INDEX = 0x01400001
AK_HANDLE = 0x81000003


class HardwareKind(Enum):
    """What the hardware-report area holds, by the request data's ``report_type``."""

    SNP = 2
    TDX = 4

    @property
    def platform(self) -> str:
        return "azure-snp" if self is HardwareKind.SNP else "azure-tdx"


@dataclass(frozen=True)
class HclReport:
    version: int
    kind: HardwareKind
    #: The SNP report (1184 bytes) or the TDREPORT (1024 bytes), without padding.
    hardware_report: bytes
    #: The runtime-claims JSON exactly as hashed into the hardware report.
    runtime_claims: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "header_version": self.version,
            "report_type": self.kind.name,
            "hardware_report_size": len(self.hardware_report),
            "runtime_claims_size": len(self.runtime_claims),
        }


def parse_hcl_report(data: bytes) -> HclReport:
    """Parse an HCL report as read from NV (zero padding after ``report_size`` allowed)."""
    if len(data) < VARIABLE_OFFSET:
        raise HclReportError(
            f"HCL report: {len(data)} bytes is shorter than its fixed part ({VARIABLE_OFFSET})"
        )
    signature, version, report_size, request_type, status, *reserved = HEADER.unpack_from(data)
    if signature != SIGNATURE:
        raise HclReportError(f"HCL report: signature 0x{signature:08x} is not 'HCLA'")
    if version not in HEADER_VERSIONS:
        raise UnsupportedVersionError(
            f"HCL report: header version {version} is unknown (known: 1, 2)"
        )
    if request_type != REQUEST_TYPE_AK_CERT:
        raise HclReportError(
            f"HCL report: request type {request_type} is not the AK-certificate report (2)"
        )
    if status != 0:
        raise HclReportError(f"HCL report: the paravisor reported status 0x{status:x}")
    if any(reserved):
        raise HclReportError("HCL report: reserved header words are not zero")
    data_size, req_version, report_type, hash_type, var_size = REQUEST.unpack_from(
        data, REQUEST_OFFSET
    )
    if req_version != REQUEST_VERSION:
        raise UnsupportedVersionError(
            f"HCL report: request data version {req_version} is unknown (known: 1)"
        )
    try:
        kind = HardwareKind(report_type)
    except ValueError:
        raise HclReportError(
            f"HCL report: hardware report type {report_type} is neither SNP (2) nor TDX (4)"
        ) from None
    if hash_type != HASH_SHA256:
        name = _HASH_NAMES.get(hash_type, f"type {hash_type}")
        raise UnsupportedVersionError(
            f"HCL report: report_data hash {name} is not supported (only SHA-256)"
        )
    if not 0 < var_size <= MAX_VARIABLE_DATA:
        raise HclReportError(f"HCL report: runtime claims size {var_size} is out of range")
    if data_size != REQUEST.size + var_size:
        raise HclReportError(
            f"HCL report: request data size {data_size} is not {REQUEST.size} + {var_size}"
        )
    end = VARIABLE_OFFSET + var_size
    if report_size != end:
        raise HclReportError(f"HCL report: report_size {report_size} should be {end}")
    if len(data) < end:
        raise HclReportError(f"HCL report: truncated ({len(data)} bytes, needs {end})")
    if any(data[end:]):
        raise HclReportError(f"HCL report: non-zero bytes after the report (offset {end})")
    area = data[HW_REPORT_OFFSET:REQUEST_OFFSET]
    if kind is HardwareKind.TDX:
        if any(area[TD_REPORT_SIZE:]):
            raise HclReportError("HCL report: the padding after the TDREPORT is not zero")
        area = area[:TD_REPORT_SIZE]
    return HclReport(
        version=version,
        kind=kind,
        hardware_report=bytes(area),
        runtime_claims=bytes(data[VARIABLE_OFFSET:end]),
    )


def build_hcl_report(
    kind: HardwareKind, hardware_report: bytes, runtime_claims: bytes, *, version: int = 2
) -> bytes:
    """The inverse of :func:`parse_hcl_report` (for the simulated paravisor and tests)."""
    area = HW_REPORT_AREA if kind is HardwareKind.SNP else TD_REPORT_SIZE
    if len(hardware_report) != area:
        raise ValueError(f"a {kind.name} hardware report is {area} bytes")
    end = VARIABLE_OFFSET + len(runtime_claims)
    header = HEADER.pack(SIGNATURE, version, end, REQUEST_TYPE_AK_CERT, 0, 0, 0, 0)
    request = REQUEST.pack(
        REQUEST.size + len(runtime_claims),
        REQUEST_VERSION,
        kind.value,
        HASH_SHA256,
        len(runtime_claims),
    )
    return header + hardware_report.ljust(HW_REPORT_AREA, b"\0") + request + runtime_claims
