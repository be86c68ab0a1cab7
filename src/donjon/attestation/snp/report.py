"""Typed model of an SEV-SNP attestation report: parse, inspect, serialise.

``parse_report`` is strict: size, version and must-be-zero fields are checked
before any field is trusted. ``SnpReport.to_bytes`` is the exact inverse, so
a producer (the simulated TEE) can build reports field by field and sign
``to_bytes()[:SIGNED_SIZE]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from donjon.attestation.errors import (
    MalformedEvidenceError,
    ProductMismatchError,
    ReservedFieldError,
    UnsupportedVersionError,
)
from donjon.attestation.snp import layout
from donjon.attestation.snp.product import Product

_ORDER = ("bl", "tee", "snp", "ucode", "fmc")
_MILAN_INDEX = tuple(layout.TCB_LAYOUT_MILAN[name] for name in _ORDER[:4])
_TURIN_INDEX = tuple(layout.TCB_LAYOUT_TURIN[name] for name in _ORDER)


@dataclass(frozen=True)
class TcbVersion:
    """Security patch levels packed in a TCB_VERSION (u64). ``fmc`` exists on Turin only."""

    bl: int
    tee: int
    snp: int
    ucode: int
    fmc: int | None = None

    def __post_init__(self) -> None:
        fmc = 0 if self.fmc is None else self.fmc
        if not (
            0 <= self.bl <= 0xFF
            and 0 <= self.tee <= 0xFF
            and 0 <= self.snp <= 0xFF
            and 0 <= self.ucode <= 0xFF
            and 0 <= fmc <= 0xFF
        ):
            raise ValueError(f"TCB components must each fit in a byte: {self.components()}")

    @property
    def turin(self) -> bool:
        return self.fmc is not None

    @classmethod
    def decode(cls, raw: int, *, turin: bool) -> TcbVersion:
        data = raw.to_bytes(8, "little")
        if turin:
            t = _TURIN_INDEX
            return cls(data[t[0]], data[t[1]], data[t[2]], data[t[3]], data[t[4]])
        m = _MILAN_INDEX
        return cls(data[m[0]], data[m[1]], data[m[2]], data[m[3]])

    def reserved_bytes(self, raw: int) -> bytes:
        """Bytes of ``raw`` that the layout leaves unused (must be zero)."""
        used = set((layout.TCB_LAYOUT_TURIN if self.turin else layout.TCB_LAYOUT_MILAN).values())
        data = raw.to_bytes(8, "little")
        return bytes(data[i] for i in range(8) if i not in used)

    @property
    def raw(self) -> int:
        out = bytearray(8)
        pos = layout.TCB_LAYOUT_TURIN if self.turin else layout.TCB_LAYOUT_MILAN
        for name, index in pos.items():
            out[index] = getattr(self, name)
        return int.from_bytes(out, "little")

    def components(self) -> dict[str, int]:
        parts = {"bl": self.bl, "tee": self.tee, "snp": self.snp, "ucode": self.ucode}
        if self.fmc is not None:
            parts["fmc"] = self.fmc
        return parts

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.components().items())


@dataclass(frozen=True)
class GuestPolicy:
    """The guest POLICY the owner set at launch; the firmware enforces it."""

    raw: int

    @property
    def abi_minor(self) -> int:
        return (self.raw >> layout.POLICY_ABI_MINOR_SHIFT) & 0xFF

    @property
    def abi_major(self) -> int:
        return (self.raw >> layout.POLICY_ABI_MAJOR_SHIFT) & 0xFF

    @property
    def smt_allowed(self) -> bool:
        return bool(self.raw & layout.POLICY_SMT)

    @property
    def reserved_bit17(self) -> bool:
        return bool(self.raw & layout.POLICY_RESERVED_ONE)

    @property
    def migrate_ma_allowed(self) -> bool:
        return bool(self.raw & layout.POLICY_MIGRATE_MA)

    @property
    def debug_allowed(self) -> bool:
        return bool(self.raw & layout.POLICY_DEBUG)

    @property
    def single_socket(self) -> bool:
        return bool(self.raw & layout.POLICY_SINGLE_SOCKET)

    @property
    def cxl_allowed(self) -> bool:
        return bool(self.raw & layout.POLICY_CXL_ALLOW)

    @property
    def mem_aes_256_xts(self) -> bool:
        return bool(self.raw & layout.POLICY_MEM_AES_256_XTS)

    @property
    def rapl_disabled(self) -> bool:
        return bool(self.raw & layout.POLICY_RAPL_DIS)

    @property
    def ciphertext_hiding(self) -> bool:
        return bool(self.raw & layout.POLICY_CIPHERTEXT_HIDING)

    @property
    def page_swap_disabled(self) -> bool:
        return bool(self.raw & layout.POLICY_PAGE_SWAP_DISABLE)

    @property
    def unknown_bits(self) -> int:
        return self.raw & ~layout.POLICY_KNOWN_BITS

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw": f"0x{self.raw:x}",
            "abi_minor": self.abi_minor,
            "abi_major": self.abi_major,
            "smt_allowed": self.smt_allowed,
            "reserved_bit17": self.reserved_bit17,
            "migrate_ma_allowed": self.migrate_ma_allowed,
            "debug_allowed": self.debug_allowed,
            "single_socket": self.single_socket,
            "cxl_allowed": self.cxl_allowed,
            "mem_aes_256_xts": self.mem_aes_256_xts,
            "rapl_disabled": self.rapl_disabled,
            "ciphertext_hiding": self.ciphertext_hiding,
            "page_swap_disabled": self.page_swap_disabled,
        }


@dataclass(frozen=True)
class PlatformInfo:
    """PLATFORM_INFO: how the host platform is configured. Unknown bits are kept, not refused."""

    raw: int

    @property
    def smt_enabled(self) -> bool:
        return bool(self.raw & layout.PLATFORM_SMT_EN)

    @property
    def tsme_enabled(self) -> bool:
        return bool(self.raw & layout.PLATFORM_TSME_EN)

    @property
    def ecc_enabled(self) -> bool:
        return bool(self.raw & layout.PLATFORM_ECC_EN)

    @property
    def rapl_disabled(self) -> bool:
        return bool(self.raw & layout.PLATFORM_RAPL_DIS)

    @property
    def ciphertext_hiding_enabled(self) -> bool:
        return bool(self.raw & layout.PLATFORM_CIPHERTEXT_HIDING_EN)

    @property
    def alias_check_complete(self) -> bool:
        return bool(self.raw & layout.PLATFORM_ALIAS_CHECK_COMPLETE)

    @property
    def tio_enabled(self) -> bool:
        return bool(self.raw & layout.PLATFORM_TIO_EN)

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw": f"0x{self.raw:x}",
            "smt_enabled": self.smt_enabled,
            "tsme_enabled": self.tsme_enabled,
            "ecc_enabled": self.ecc_enabled,
            "rapl_disabled": self.rapl_disabled,
            "ciphertext_hiding_enabled": self.ciphertext_hiding_enabled,
            "alias_check_complete": self.alias_check_complete,
            "tio_enabled": self.tio_enabled,
        }


class SigningKey(Enum):
    VCEK = layout.SIGNING_KEY_VCEK
    VLEK = layout.SIGNING_KEY_VLEK
    NONE = layout.SIGNING_KEY_NONE


@dataclass(frozen=True)
class FirmwareVersion:
    major: int
    minor: int
    build: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"


_SIZES = {f.name: f.size for f in layout.FIELDS if f.kind == "bytes"}
_Z16 = bytes(16)
_Z32 = bytes(32)
_Z48 = bytes(48)
_Z64 = bytes(64)
_Z72 = bytes(72)
_DEFAULT_TCB = TcbVersion(0, 0, 0, 0)


@dataclass(frozen=True)
class SnpReport:
    """Every field of an ATTESTATION_REPORT. Defaults make a builder for producers."""

    version: int = 3
    guest_svn: int = 0
    policy: GuestPolicy = GuestPolicy(layout.POLICY_RESERVED_ONE | layout.POLICY_SMT)
    family_id: bytes = _Z16
    image_id: bytes = _Z16
    vmpl: int = 0
    signature_algo: int = layout.SIG_ALGO_ECDSA_P384_SHA384
    current_tcb: TcbVersion = _DEFAULT_TCB
    platform_info: PlatformInfo = PlatformInfo(0)
    author_key_en: bool = False
    mask_chip_key: bool = False
    signing_key: SigningKey = SigningKey.VCEK
    report_data: bytes = _Z64
    measurement: bytes = _Z48
    host_data: bytes = _Z32
    id_key_digest: bytes = _Z48
    author_key_digest: bytes = _Z48
    report_id: bytes = _Z32
    report_id_ma: bytes = _Z32
    reported_tcb: TcbVersion = _DEFAULT_TCB
    cpuid: tuple[int, int, int] | None = None  # (family, model, stepping), v3+ only
    chip_id: bytes = _Z64
    committed_tcb: TcbVersion = _DEFAULT_TCB
    current_fw: FirmwareVersion = FirmwareVersion(0, 0, 0)
    committed_fw: FirmwareVersion = FirmwareVersion(0, 0, 0)
    launch_tcb: TcbVersion = _DEFAULT_TCB
    launch_mit_vector: int | None = None  # v5+ only
    current_mit_vector: int | None = None  # v5+ only
    signature_r: bytes = _Z72  # little-endian, as in the report
    signature_s: bytes = _Z72
    raw: bytes = field(default=b"", compare=False, repr=False)  # the parsed bytes, if parsed

    def __post_init__(self) -> None:
        if self.raw:  # parsed: the struct format fixed every size already
            return
        for name, size in _SIZES.items():
            if len(getattr(self, name)) != size:
                raise ValueError(f"SNP report field {name} must be {size} bytes")
        if self.version not in layout.SUPPORTED_VERSIONS:
            raise UnsupportedVersionError(
                f"SNP report version {self.version} is not supported (known: 2, 3, 5)"
            )

    # --- derived facts -------------------------------------------------------------------
    @property
    def product(self) -> Product | None:
        """The product line named by CPUID (v3+); ``None`` for v2 reports."""
        if self.cpuid is None:
            return None
        return Product.from_cpuid(self.cpuid[0], self.cpuid[1])

    @property
    def turin_layout(self) -> bool:
        return self.cpuid is not None and self.cpuid[0] == layout.CPUID_FAMILY_ZEN5

    @property
    def signature_ints(self) -> tuple[int, int]:
        return int.from_bytes(self.signature_r, "little"), int.from_bytes(
            self.signature_s, "little"
        )

    def with_signature(self, r: int, s: int) -> SnpReport:
        """Return a copy carrying an ECDSA signature given as integers (for producers)."""
        return replace(
            self,
            signature_r=r.to_bytes(layout.ECDSA_COMPONENT_SIZE, "little"),
            signature_s=s.to_bytes(layout.ECDSA_COMPONENT_SIZE, "little"),
            raw=b"",
        )

    # --- serialisation -------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The 1184-byte report; reserved fields zero (must-be-one bits come from ``policy``)."""
        out = bytearray(layout.REPORT_SIZE)
        key_info = (
            (layout.KEY_INFO_AUTHOR_KEY_EN if self.author_key_en else 0)
            | (layout.KEY_INFO_MASK_CHIP_KEY if self.mask_chip_key else 0)
            | (self.signing_key.value << layout.KEY_INFO_SIGNING_KEY_SHIFT)
        )
        values: dict[str, int | bytes] = {
            "version": self.version,
            "guest_svn": self.guest_svn,
            "policy": self.policy.raw,
            "family_id": self.family_id,
            "image_id": self.image_id,
            "vmpl": self.vmpl,
            "signature_algo": self.signature_algo,
            "current_tcb": self.current_tcb.raw,
            "platform_info": self.platform_info.raw,
            "key_info": key_info,
            "report_data": self.report_data,
            "measurement": self.measurement,
            "host_data": self.host_data,
            "id_key_digest": self.id_key_digest,
            "author_key_digest": self.author_key_digest,
            "report_id": self.report_id,
            "report_id_ma": self.report_id_ma,
            "reported_tcb": self.reported_tcb.raw,
            "chip_id": self.chip_id,
            "committed_tcb": self.committed_tcb.raw,
            "current_build": self.current_fw.build,
            "current_minor": self.current_fw.minor,
            "current_major": self.current_fw.major,
            "committed_build": self.committed_fw.build,
            "committed_minor": self.committed_fw.minor,
            "committed_major": self.committed_fw.major,
            "launch_tcb": self.launch_tcb.raw,
            "signature_r": self.signature_r,
            "signature_s": self.signature_s,
        }
        if self.version >= 3:
            if self.cpuid is None:
                raise ValueError(f"SNP report version {self.version} needs cpuid")
            values["cpuid_fam_id"], values["cpuid_mod_id"], values["cpuid_step"] = self.cpuid
        elif self.cpuid is not None:
            raise ValueError("SNP report version 2 has no cpuid field")
        if self.version >= 5:
            values["launch_mit_vector"] = self.launch_mit_vector or 0
            values["current_mit_vector"] = self.current_mit_vector or 0
        for name, value in values.items():
            spec = layout.FIELD_BY_NAME[name]
            if isinstance(value, bytes):
                out[spec.offset : spec.end] = value
            else:
                out[spec.offset : spec.end] = value.to_bytes(spec.size, "little")
        return bytes(out)

    def signed_bytes(self) -> bytes:
        data = self.raw or self.to_bytes()
        return data[: layout.SIGNED_SIZE]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: hex for bytes, decoded bit fields, TCB components."""
        return {
            "version": self.version,
            "guest_svn": self.guest_svn,
            "policy": self.policy.to_dict(),
            "family_id": self.family_id.hex(),
            "image_id": self.image_id.hex(),
            "vmpl": self.vmpl,
            "signature_algo": self.signature_algo,
            "current_tcb": self.current_tcb.components(),
            "platform_info": self.platform_info.to_dict(),
            "author_key_en": self.author_key_en,
            "mask_chip_key": self.mask_chip_key,
            "signing_key": self.signing_key.name,
            "report_data": self.report_data.hex(),
            "measurement": self.measurement.hex(),
            "host_data": self.host_data.hex(),
            "id_key_digest": self.id_key_digest.hex(),
            "author_key_digest": self.author_key_digest.hex(),
            "report_id": self.report_id.hex(),
            "report_id_ma": self.report_id_ma.hex(),
            "reported_tcb": self.reported_tcb.components(),
            "reported_tcb_raw": f"0x{self.reported_tcb.raw:016x}",
            "cpuid_fam_mod_step": list(self.cpuid) if self.cpuid else None,
            "product": _product_name(self),
            "chip_id": self.chip_id.hex(),
            "committed_tcb": self.committed_tcb.components(),
            "current_fw": str(self.current_fw),
            "committed_fw": str(self.committed_fw),
            "launch_tcb": self.launch_tcb.components(),
            "launch_mit_vector": _hex_or_none(self.launch_mit_vector),
            "current_mit_vector": _hex_or_none(self.current_mit_vector),
            "signature_r": self.signature_r.hex(),
            "signature_s": self.signature_s.hex(),
        }


def _hex_or_none(value: int | None) -> str | None:
    return None if value is None else f"0x{value:x}"


def _product_name(report: SnpReport) -> str | None:
    try:
        product = report.product
    except ProductMismatchError:
        return None
    return product.value if product else None


_ZEROS = bytes(layout.REPORT_SIZE)


def reserved_violations(data: bytes) -> list[str]:
    """Names of the must-be-zero/must-be-one rules that ``data`` breaks (size already checked)."""
    values = dict(zip(layout.REPORT_STRUCT_FIELDS, layout.REPORT_STRUCT.unpack(data), strict=True))
    return _violations(data, values)


def _violations(data: bytes, values: dict[str, Any]) -> list[str]:
    version = values["version"]
    problems: list[str] = []
    for start, end in layout.reserved_ranges(version):
        if data[start:end] != _ZEROS[: end - start]:
            problems.append(f"reserved bytes 0x{start:03x}..0x{end:03x} are not zero")
    key_info = values["key_info"]
    if key_info & ~layout.KEY_INFO_KNOWN_BITS:
        problems.append(f"reserved bits of key_info (0x048) are set: 0x{key_info:x}")
    policy = GuestPolicy(values["policy"])
    if policy.unknown_bits:
        problems.append(f"reserved policy bits 26..63 are set: 0x{policy.raw:x}")
    if not policy.reserved_bit17:
        problems.append("policy bit 17 (reserved, must be one) is clear")
    turin = version >= 3 and values["cpuid_fam_id"] == layout.CPUID_FAMILY_ZEN5
    mask = _TCB_RESERVED_TURIN if turin else _TCB_RESERVED_MILAN
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        if values[name] & mask:
            problems.append(f"reserved bytes of {name} are not zero: 0x{values[name]:016x}")
    return problems


def _reserved_mask(positions: dict[str, int]) -> int:
    used = set(positions.values())
    return sum(0xFF << (8 * i) for i in range(8) if i not in used)


_TCB_RESERVED_MILAN = _reserved_mask(layout.TCB_LAYOUT_MILAN)
_TCB_RESERVED_TURIN = _reserved_mask(layout.TCB_LAYOUT_TURIN)


def parse_report(data: bytes, *, strict: bool = True) -> SnpReport:
    """Parse a 1184-byte report. ``strict=False`` skips reserved-field checks (for display)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvidenceError("SNP report: expected bytes")
    data = bytes(data)
    if len(data) != layout.REPORT_SIZE:
        raise MalformedEvidenceError(
            f"SNP report: expected {layout.REPORT_SIZE} bytes, got {len(data)}"
        )
    v = dict(zip(layout.REPORT_STRUCT_FIELDS, layout.REPORT_STRUCT.unpack(data), strict=True))
    version = v["version"]
    if version not in layout.SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"SNP report version {version} is not supported (known: 2, 3, 5)"
        )
    if strict:
        problems = _violations(data, v)
        if problems:
            raise ReservedFieldError(f"SNP report: {problems[0]}")
    cpuid = None
    if version >= 3:
        cpuid = (v["cpuid_fam_id"], v["cpuid_mod_id"], v["cpuid_step"])
    turin = cpuid is not None and cpuid[0] == layout.CPUID_FAMILY_ZEN5
    key_info = v["key_info"]
    signing = (key_info & layout.KEY_INFO_SIGNING_KEY_MASK) >> layout.KEY_INFO_SIGNING_KEY_SHIFT
    try:
        signing_key = SigningKey(signing)
    except ValueError as exc:
        raise MalformedEvidenceError(
            f"SNP report: unknown signing_key {signing} in key_info (0x048)"
        ) from exc

    def tcb(name: str) -> TcbVersion:
        return TcbVersion.decode(v[name], turin=turin)

    return SnpReport(
        version=version,
        guest_svn=v["guest_svn"],
        policy=GuestPolicy(v["policy"]),
        family_id=v["family_id"],
        image_id=v["image_id"],
        vmpl=v["vmpl"],
        signature_algo=v["signature_algo"],
        current_tcb=tcb("current_tcb"),
        platform_info=PlatformInfo(v["platform_info"]),
        author_key_en=bool(key_info & layout.KEY_INFO_AUTHOR_KEY_EN),
        mask_chip_key=bool(key_info & layout.KEY_INFO_MASK_CHIP_KEY),
        signing_key=signing_key,
        report_data=v["report_data"],
        measurement=v["measurement"],
        host_data=v["host_data"],
        id_key_digest=v["id_key_digest"],
        author_key_digest=v["author_key_digest"],
        report_id=v["report_id"],
        report_id_ma=v["report_id_ma"],
        reported_tcb=tcb("reported_tcb"),
        cpuid=cpuid,
        chip_id=v["chip_id"],
        committed_tcb=tcb("committed_tcb"),
        current_fw=FirmwareVersion(v["current_major"], v["current_minor"], v["current_build"]),
        committed_fw=FirmwareVersion(
            v["committed_major"], v["committed_minor"], v["committed_build"]
        ),
        launch_tcb=tcb("launch_tcb"),
        launch_mit_vector=v["launch_mit_vector"] if version >= 5 else None,
        current_mit_vector=v["current_mit_vector"] if version >= 5 else None,
        signature_r=v["signature_r"],
        signature_s=v["signature_s"],
        raw=data,
    )
