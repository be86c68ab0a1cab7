"""Byte layout of the AMD SEV-SNP ``ATTESTATION_REPORT`` (firmware ABI spec, Table 23).

Kept apart from parsing so that producers (the simulated TEE) and consumers
(the verifier) share one source of truth for offsets. Every multi-byte integer
is little-endian. The report is 1184 bytes; the signature covers bytes
``0x000..0x2A0`` and ``r``/``s`` are 72-byte little-endian integers.

Versions: 2 (ABI 1.51+), 3 (adds CPUID family/model/stepping at 0x188) and 5
(adds the launch/current mitigation vectors at 0x1F8/0x200). Version 4 was
never published with a distinct layout; it is refused rather than guessed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

REPORT_SIZE = 0x4A0  # 1184
SIGNED_SIZE = 0x2A0  # bytes 0..0x2A0 are covered by the signature
SIGNATURE_OFFSET = 0x2A0
SIGNATURE_SIZE = 0x200
ECDSA_COMPONENT_SIZE = 72  # r and s, little-endian, zero-padded
SUPPORTED_VERSIONS = frozenset({2, 3, 5})
SIG_ALGO_ECDSA_P384_SHA384 = 1

Kind = Literal["u8", "u32", "u64", "bytes"]


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    kind: Kind
    min_version: int = 2  # first report version that defines the field

    @property
    def end(self) -> int:
        return self.offset + self.size


#: Every named field, in offset order. Reserved areas are in :data:`RESERVED`.
FIELDS: tuple[Field, ...] = (
    Field("version", 0x000, 4, "u32"),
    Field("guest_svn", 0x004, 4, "u32"),
    Field("policy", 0x008, 8, "u64"),
    Field("family_id", 0x010, 16, "bytes"),
    Field("image_id", 0x020, 16, "bytes"),
    Field("vmpl", 0x030, 4, "u32"),
    Field("signature_algo", 0x034, 4, "u32"),
    Field("current_tcb", 0x038, 8, "u64"),
    Field("platform_info", 0x040, 8, "u64"),
    Field("key_info", 0x048, 4, "u32"),  # author_key_en, mask_chip_key, signing_key
    Field("report_data", 0x050, 64, "bytes"),
    Field("measurement", 0x090, 48, "bytes"),
    Field("host_data", 0x0C0, 32, "bytes"),
    Field("id_key_digest", 0x0E0, 48, "bytes"),
    Field("author_key_digest", 0x110, 48, "bytes"),
    Field("report_id", 0x140, 32, "bytes"),
    Field("report_id_ma", 0x160, 32, "bytes"),
    Field("reported_tcb", 0x180, 8, "u64"),
    Field("cpuid_fam_id", 0x188, 1, "u8", min_version=3),
    Field("cpuid_mod_id", 0x189, 1, "u8", min_version=3),
    Field("cpuid_step", 0x18A, 1, "u8", min_version=3),
    Field("chip_id", 0x1A0, 64, "bytes"),
    Field("committed_tcb", 0x1E0, 8, "u64"),
    Field("current_build", 0x1E8, 1, "u8"),
    Field("current_minor", 0x1E9, 1, "u8"),
    Field("current_major", 0x1EA, 1, "u8"),
    Field("committed_build", 0x1EC, 1, "u8"),
    Field("committed_minor", 0x1ED, 1, "u8"),
    Field("committed_major", 0x1EE, 1, "u8"),
    Field("launch_tcb", 0x1F0, 8, "u64"),
    Field("launch_mit_vector", 0x1F8, 8, "u64", min_version=5),
    Field("current_mit_vector", 0x200, 8, "u64", min_version=5),
    Field("signature_r", 0x2A0, ECDSA_COMPONENT_SIZE, "bytes"),
    Field("signature_s", 0x2E8, ECDSA_COMPONENT_SIZE, "bytes"),
)

FIELD_BY_NAME = {f.name: f for f in FIELDS}

#: The whole report as one ``struct`` format, for fast parsing. Reserved areas are pad
#: bytes (``x``) and are checked separately; v2 reports read zeros for the v3+ fields.
REPORT_STRUCT = struct.Struct(
    "<IIQ16s16sIIQQI4x64s48s32s48s48s32s32sQBBB21x64sQBBBxBBBxQQQ152x72s72s368x"
)
#: Field names in ``REPORT_STRUCT`` order.
REPORT_STRUCT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in sorted(FIELDS, key=lambda f: f.offset)
)


def reserved_ranges(version: int) -> tuple[tuple[int, int], ...]:
    """Must-be-zero byte ranges ``[start, end)`` for a report version."""
    cpuid_area = (0x18B, 0x1A0) if version >= 3 else (0x188, 0x1A0)
    tail = (0x208, 0x2A0) if version >= 5 else (0x1F8, 0x2A0)
    return (
        (0x04C, 0x050),
        cpuid_area,
        (0x1EB, 0x1EC),
        (0x1EF, 0x1F0),
        tail,
        (0x330, REPORT_SIZE),  # rest of the signature area after r and s
    )


# --- guest POLICY (offset 0x008) bit positions --------------------------------------------
POLICY_ABI_MINOR_SHIFT = 0
POLICY_ABI_MAJOR_SHIFT = 8
POLICY_SMT = 1 << 16
POLICY_RESERVED_ONE = 1 << 17  # must be one
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20
POLICY_CXL_ALLOW = 1 << 21
POLICY_MEM_AES_256_XTS = 1 << 22
POLICY_RAPL_DIS = 1 << 23
POLICY_CIPHERTEXT_HIDING = 1 << 24
POLICY_PAGE_SWAP_DISABLE = 1 << 25
POLICY_KNOWN_BITS = 0xFFFF | (0x3FF << 16)  # bits 0..25; 26..63 must be zero

# --- PLATFORM_INFO (offset 0x040) bit positions -------------------------------------------
PLATFORM_SMT_EN = 1 << 0
PLATFORM_TSME_EN = 1 << 1
PLATFORM_ECC_EN = 1 << 2
PLATFORM_RAPL_DIS = 1 << 3
PLATFORM_CIPHERTEXT_HIDING_EN = 1 << 4
PLATFORM_ALIAS_CHECK_COMPLETE = 1 << 5
PLATFORM_TIO_EN = 1 << 7

# --- key_info word (offset 0x048) ---------------------------------------------------------
KEY_INFO_AUTHOR_KEY_EN = 1 << 0
KEY_INFO_MASK_CHIP_KEY = 1 << 1
KEY_INFO_SIGNING_KEY_SHIFT = 2
KEY_INFO_SIGNING_KEY_MASK = 0b111 << 2
KEY_INFO_KNOWN_BITS = 0b11111  # bits 5..31 are reserved, must be zero
SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1
SIGNING_KEY_NONE = 7

# --- TCB_VERSION byte positions (u64, little-endian byte index) ---------------------------
#: Milan and Genoa: [bl, tee, 0, 0, 0, 0, snp, ucode]
TCB_LAYOUT_MILAN: dict[str, int] = {"bl": 0, "tee": 1, "snp": 6, "ucode": 7}
#: Turin (CPUID family 0x1A): [fmc, bl, tee, snp, 0, 0, 0, ucode]
TCB_LAYOUT_TURIN: dict[str, int] = {"fmc": 0, "bl": 1, "tee": 2, "snp": 3, "ucode": 7}

CPUID_FAMILY_ZEN3_4 = 0x19  # Milan (models 0x00-0x0F), Genoa (0x10-0x1F, 0xA0-0xAF)
CPUID_FAMILY_ZEN5 = 0x1A  # Turin
