"""Build and sign SEV-SNP attestation reports with the simulated VCEK.

The report is the verifier's own model (:class:`donjon.attestation.snp.report.SnpReport`)
serialised by its own code, so a sim report differs from a real one only in who
signed it. The signature is ECDSA P-384 with SHA-384 over bytes ``0x000..0x2A0``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from donjon.attestation.snp import layout
from donjon.attestation.snp.report import FirmwareVersion, GuestPolicy, PlatformInfo, SnpReport
from donjon.keep.sim.products import CPUID, Product
from donjon.keep.sim.state import SimConfig

MEASUREMENT_SIZE = 48
REPORT_ID_SIZE = 32

#: Firmware the simulated PSP claims to run, per product.
FIRMWARE = {
    Product.MILAN: FirmwareVersion(1, 55, 35),
    Product.GENOA: FirmwareVersion(1, 55, 38),
    Product.TURIN: FirmwareVersion(1, 55, 8),
}


@dataclass(frozen=True)
class GuestIdentity:
    """What stays fixed for one simulated guest VM (one Keep process)."""

    measurement: bytes
    report_id: bytes = field(default_factory=lambda: secrets.token_bytes(REPORT_ID_SIZE))
    host_data: bytes = bytes(32)
    vmpl: int = 0

    def __post_init__(self) -> None:
        if len(self.measurement) != MEASUREMENT_SIZE:
            raise ValueError(f"measurement must be {MEASUREMENT_SIZE} bytes")
        if len(self.report_id) != REPORT_ID_SIZE or len(self.host_data) != 32:
            raise ValueError("report_id and host_data must be 32 bytes")


def build(config: SimConfig, guest: GuestIdentity, report_data: bytes) -> SnpReport:
    """The unsigned report: what the firmware would put in it for this guest."""
    if len(report_data) != 64:
        raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
    version = config.report_version
    firmware = FIRMWARE[config.product]
    return SnpReport(
        version=version,
        policy=GuestPolicy(config.policy),
        vmpl=guest.vmpl,
        current_tcb=config.tcb,
        platform_info=PlatformInfo(layout.PLATFORM_SMT_EN),
        report_data=report_data,
        measurement=guest.measurement,
        host_data=guest.host_data,
        report_id=guest.report_id,
        report_id_ma=b"\xff" * 32,  # no migration agent, as real firmware reports it
        reported_tcb=config.tcb,
        cpuid=CPUID[config.product] if version >= 3 else None,
        chip_id=config.chip_id,
        committed_tcb=config.tcb,
        current_fw=firmware,
        committed_fw=firmware,
        launch_tcb=config.tcb,
        launch_mit_vector=0 if version >= 5 else None,
        current_mit_vector=0 if version >= 5 else None,
    )


def sign(report: SnpReport, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The finished 1184-byte report, signed by ``key``."""
    der = key.sign(report.signed_bytes(), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return report.with_signature(r, s).to_bytes()


def make_report(
    config: SimConfig,
    key: ec.EllipticCurvePrivateKey,
    guest: GuestIdentity,
    report_data: bytes,
) -> bytes:
    """A signed SNP report over ``report_data``."""
    return sign(build(config, guest, report_data), key)
