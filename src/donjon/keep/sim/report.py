"""Build and sign SEV-SNP attestation reports with the simulated VCEK.

The bytes are laid out with the verifier's own field table
(:mod:`donjon.attestation.snp.layout`), so a sim report differs from a real one
only in who signed it. The signature is ECDSA P-384 over bytes ``0x000..0x2A0``
with SHA-384, ``r`` and ``s`` stored as 72-byte little-endian integers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from donjon.attestation.snp import layout
from donjon.keep.sim.products import Product
from donjon.keep.sim.state import SimConfig

MEASUREMENT_SIZE = 48
REPORT_ID_SIZE = 32

#: Firmware (major, minor, build) the simulated PSP claims to run, per product.
FIRMWARE = {Product.MILAN: (1, 55, 35), Product.GENOA: (1, 55, 38), Product.TURIN: (1, 55, 8)}


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


def _put(buf: bytearray, name: str, value: int | bytes) -> None:
    spec = layout.FIELD_BY_NAME[name]
    if isinstance(value, int):
        data = value.to_bytes(spec.size, "little")
    else:
        if len(value) != spec.size:
            raise ValueError(f"{name}: expected {spec.size} bytes, got {len(value)}")
        data = value
    buf[spec.offset : spec.end] = data


def build_unsigned(config: SimConfig, guest: GuestIdentity, report_data: bytes) -> bytearray:
    """The report body, with an all-zero signature area."""
    if len(report_data) != 64:
        raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
    product, version = config.product, config.report_version
    tcb = config.tcb.encode(product)
    major, minor, build = FIRMWARE[product]
    buf = bytearray(layout.REPORT_SIZE)
    values: dict[str, int | bytes] = {
        "version": version,
        "guest_svn": 0,
        "policy": config.policy,
        "vmpl": guest.vmpl,
        "signature_algo": layout.SIG_ALGO_ECDSA_P384_SHA384,
        "current_tcb": tcb,
        "platform_info": layout.PLATFORM_SMT_EN,
        "key_info": layout.SIGNING_KEY_VCEK << layout.KEY_INFO_SIGNING_KEY_SHIFT,
        "report_data": report_data,
        "measurement": guest.measurement,
        "host_data": guest.host_data,
        "report_id": guest.report_id,
        "report_id_ma": b"\xff" * 32,  # no migration agent, as real firmware reports it
        "reported_tcb": tcb,
        "chip_id": config.chip_id,
        "committed_tcb": tcb,
        "current_build": build,
        "current_minor": minor,
        "current_major": major,
        "committed_build": build,
        "committed_minor": minor,
        "committed_major": major,
        "launch_tcb": tcb,
    }
    if version >= 3:
        family, model, stepping = product.cpuid
        values.update(cpuid_fam_id=family, cpuid_mod_id=model, cpuid_step=stepping)
    if version >= 5:
        values.update(launch_mit_vector=0, current_mit_vector=0)
    for name, value in values.items():
        _put(buf, name, value)
    return buf


def sign(body: bytearray, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Fill the signature area of ``body`` and return the finished report."""
    der = key.sign(bytes(body[: layout.SIGNED_SIZE]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    _put(body, "signature_r", r.to_bytes(layout.ECDSA_COMPONENT_SIZE, "little"))
    _put(body, "signature_s", s.to_bytes(layout.ECDSA_COMPONENT_SIZE, "little"))
    return bytes(body)


def make_report(
    config: SimConfig,
    key: ec.EllipticCurvePrivateKey,
    guest: GuestIdentity,
    report_data: bytes,
) -> bytes:
    """A signed 1184-byte SNP report over ``report_data``."""
    return sign(build_unsigned(config, guest, report_data), key)
