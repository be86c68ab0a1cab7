"""``[snp]`` (and ``[sim]``): what an SEV-SNP report must show, a superset of Enarx's keys.

Loading is strict: an unknown key, a digest of the wrong length, or a value
that is in both an allow and a deny list is refused with the key named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.attestation.policytoml import SectionReader
from donjon.attestation.rules import RULE_KEYS, TeeRules, parse_rules
from donjon.attestation.snp import layout
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.snp.product import Product
from donjon.attestation.versionreq import VersionReq

#: Guest policy flags by name (Enarx names first, then later ABI bits).
POLICY_FLAG_BITS: dict[str, int] = {
    "SMT": layout.POLICY_SMT,
    "MigrateMA": layout.POLICY_MIGRATE_MA,
    "Debug": layout.POLICY_DEBUG,
    "SingleSocket": layout.POLICY_SINGLE_SOCKET,
    "CXL": layout.POLICY_CXL_ALLOW,
    "MemAES256XTS": layout.POLICY_MEM_AES_256_XTS,
    "RAPLDis": layout.POLICY_RAPL_DIS,
    "CiphertextHiding": layout.POLICY_CIPHERTEXT_HIDING,
    "PageSwapDisable": layout.POLICY_PAGE_SWAP_DISABLE,
}
#: The bits that ``policy_flags`` compares (everything named above).
POLICY_FLAGS_MASK = sum(POLICY_FLAG_BITS.values())

#: Platform info flags by name. ``SME`` is Enarx's name for bit 0 (now called SMT_EN).
PLATFORM_FLAG_BITS: dict[str, int] = {
    "SME": layout.PLATFORM_SMT_EN,
    "SMT": layout.PLATFORM_SMT_EN,
    "TSME": layout.PLATFORM_TSME_EN,
    "ECC": layout.PLATFORM_ECC_EN,
    "RAPLDis": layout.PLATFORM_RAPL_DIS,
    "CiphertextHiding": layout.PLATFORM_CIPHERTEXT_HIDING_EN,
    "AliasCheckComplete": layout.PLATFORM_ALIAS_CHECK_COMPLETE,
    "TIO": layout.PLATFORM_TIO_EN,
}

TCB_COMPONENTS = ("bl", "tee", "snp", "ucode", "fmc")
#: AMD publishes no TCB status: an SNP result says whether a minimum was appraised.
SNP_TCB_STATUSES = frozenset({"MeetsMinimum", "NotAppraised"})


@dataclass(frozen=True)
class TcbMinimum:
    """Per-component minimum security patch levels; ``None`` = unconstrained."""

    bl: int | None = None
    tee: int | None = None
    snp: int | None = None
    ucode: int | None = None
    fmc: int | None = None

    def shortfalls(self, actual: Mapping[str, int]) -> list[str]:
        """Components below the minimum, as ``name=actual<min`` strings.

        A component the report does not have (``fmc`` before Turin) cannot show that it
        meets a minimum above 0, so it falls short rather than being skipped.
        """
        out = []
        for name in TCB_COMPONENTS:
            minimum = getattr(self, name)
            if minimum is None:
                continue
            if name not in actual:
                if minimum > 0:
                    out.append(f"{name}=absent<{minimum}")
            elif actual[name] < minimum:
                out.append(f"{name}={actual[name]}<{minimum}")
        return out


@dataclass(frozen=True)
class SnpPolicy:
    """What an SNP (or sim) report must show. Empty allow-lists mean "any"."""

    signer: frozenset[bytes] = frozenset()
    signer_deny: frozenset[bytes] = frozenset()
    id_key_digest: frozenset[bytes] = frozenset()
    id_key_digest_deny: frozenset[bytes] = frozenset()
    measurement: frozenset[bytes] = frozenset()
    measurement_deny: frozenset[bytes] = frozenset()
    abi: VersionReq | None = None
    platform_info_flags: int | None = None  # bits that must be set
    policy_flags: int | None = None  # exact value of the named guest policy bits
    allow_debug: bool = False
    allow_migration_agent: bool = False
    vmpl: frozenset[int] = frozenset({0})
    min_reported_tcb: TcbMinimum | None = None
    min_launch_tcb: TcbMinimum | None = None
    min_firmware: tuple[int, int, int] | None = None
    min_guest_svn: int | None = None
    host_data: frozenset[bytes] = frozenset()
    family_id: frozenset[bytes] = frozenset()
    image_id: frozenset[bytes] = frozenset()
    products: frozenset[Product] = frozenset()
    signing_keys: frozenset[str] = frozenset({"VCEK", "VLEK"})
    #: "require": refuse without a current ARK CRL; "if-available": accept, say so.
    crl: CrlMode = "require"
    rules: TeeRules = field(default_factory=TeeRules)

    @property
    def allowed_workloads(self) -> frozenset[bytes]:
        return self.rules.allowed_workloads

    def pinned(self) -> tuple[str, ...]:
        """The keys set here that pin the guest's code (for ``policy.pinned``): its launch
        measurement, or the owner's keys over its ID block. HOST_DATA is the hypervisor's
        choice at launch, and IMAGE_ID/FAMILY_ID sit in an ID block that any key can sign:
        they narrow, they pin nothing."""
        pins = (
            ("measurement", self.measurement),
            ("signer", self.signer),
            ("id_key_digest", self.id_key_digest),
        )
        return tuple(name for name, values in pins if values)


# TOML name -> SnpPolicy attribute; Enarx spellings are aliases of Donjon's.
_DIGEST_LISTS: dict[str, tuple[str, int]] = {
    "signer": ("signer", 48),
    "signer_deny": ("signer_deny", 48),
    "signer_blacklist": ("signer_deny", 48),
    "id_key_digest": ("id_key_digest", 48),
    "id_key_digest_deny": ("id_key_digest_deny", 48),
    "id_key_digest_blacklist": ("id_key_digest_deny", 48),
    "hash": ("measurement", 48),
    "measurement": ("measurement", 48),
    "hash_blacklist": ("measurement_deny", 48),
    "measurement_deny": ("measurement_deny", 48),
    "host_data": ("host_data", 32),
    "family_id": ("family_id", 16),
    "image_id": ("image_id", 16),
}
SNP_KEYS = (
    set(_DIGEST_LISTS)
    | RULE_KEYS
    | {
        "abi",
        "platform_info_flags",
        "policy_flags",
        "allow_debug",
        "allow_migration_agent",
        "vmpl",
        "min_reported_tcb",
        "min_launch_tcb",
        "min_firmware",
        "min_guest_svn",
        "products",
        "signing_keys",
        "crl",
    }
)
CRL_MODES: tuple[CrlMode, ...] = ("require", "if-available")
_PAIRS = (
    ("signer", "signer_deny"),
    ("id_key_digest", "id_key_digest_deny"),
    ("measurement", "measurement_deny"),
)


def parse_snp(table: Mapping[str, Any], reader: SectionReader) -> SnpPolicy:
    """An ``[snp]`` table (or the SNP keys of ``[sim]``), strictly."""
    for key in table:
        if key not in SNP_KEYS:
            raise reader.fail(key, "unknown key")
    values: dict[str, Any] = {"rules": parse_rules(table, reader)}
    lists: dict[str, set[bytes]] = {}
    spelled: dict[str, str] = {}  # attribute -> the key as written, for messages
    for key, (attr, size) in _DIGEST_LISTS.items():
        if key in table:
            lists.setdefault(attr, set()).update(reader.digests(table[key], size, key))
            spelled[attr] = key
    for allow, deny in _PAIRS:
        both = lists.get(allow, set()) & lists.get(deny, set())
        if both:
            raise reader.fail(
                spelled[deny], f"{sorted(both)[0].hex()} is in both the allow and deny lists"
            )
    values.update({attr: frozenset(v) for attr, v in lists.items()})
    if "abi" in table:
        abi = table["abi"]
        if not isinstance(abi, str):
            raise reader.fail("abi", 'must be a version requirement such as ">=1.51"')
        try:
            values["abi"] = VersionReq.parse(abi)
        except ValueError as exc:
            raise reader.fail("abi", str(exc)) from exc
    if "platform_info_flags" in table:
        values["platform_info_flags"] = reader.flags(
            table["platform_info_flags"], PLATFORM_FLAG_BITS, "platform_info_flags"
        )
    for key in ("allow_debug", "allow_migration_agent"):
        if key in table:
            values[key] = reader.boolean(table, key)
    if "policy_flags" in table:
        flags = reader.flags(table["policy_flags"], POLICY_FLAG_BITS, "policy_flags")
        if flags & layout.POLICY_DEBUG and not values.get("allow_debug", False):
            raise reader.fail("policy_flags", "lists Debug, which needs allow_debug = true")
        if flags & layout.POLICY_MIGRATE_MA and not values.get("allow_migration_agent", False):
            raise reader.fail(
                "policy_flags", "lists MigrateMA, which needs allow_migration_agent = true"
            )
        values["policy_flags"] = flags
    if "vmpl" in table:
        raw = table["vmpl"]
        items = raw if isinstance(raw, list) else [raw]
        if not items or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 3 for v in items
        ):
            raise reader.fail("vmpl", "must be a VMPL 0..3 or a list of them")
        values["vmpl"] = frozenset(items)
    for key in ("min_reported_tcb", "min_launch_tcb"):
        if key in table:
            values[key] = _tcb_min(table[key], key, reader)
    if "min_firmware" in table:
        values["min_firmware"] = _firmware(table["min_firmware"], reader)
    if "min_guest_svn" in table:
        values["min_guest_svn"] = reader.integer(
            table["min_guest_svn"], "min_guest_svn", 0, 2**32 - 1
        )
    if "products" in table:
        values["products"] = frozenset(reader.names(table["products"], "products", Product.parse))
    if "signing_keys" in table:
        keys = reader.names(table["signing_keys"], "signing_keys", _signing_key)
        values["signing_keys"] = frozenset(keys)
    if "crl" in table:
        mode = table["crl"]
        if mode not in CRL_MODES:
            raise reader.fail("crl", f'must be "require" or "if-available", got {mode!r}')
        values["crl"] = mode
    return SnpPolicy(**values)


def _tcb_min(value: Any, key: str, reader: SectionReader) -> TcbMinimum:
    if not isinstance(value, dict):
        raise reader.fail(key, "must be a table such as { bl = 3, snp = 8 }")
    for name, level in value.items():
        if name not in TCB_COMPONENTS:
            raise reader.fail(f"{key}.{name}", f"unknown TCB component (known: {TCB_COMPONENTS})")
        reader.integer(level, f"{key}.{name}", 0, 255)
    return TcbMinimum(**value)


def _firmware(value: Any, reader: SectionReader) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", value) if isinstance(value, str) else None
    if match is None:
        raise reader.fail("min_firmware", f'expected "major.minor[.build]", got {value!r}')
    major, minor, build = (int(g) if g else 0 for g in match.groups())
    if max(major, minor, build) > 255:
        raise reader.fail("min_firmware", "each part must be 0..255")
    return major, minor, build


def _signing_key(text: str) -> str:
    if text not in ("VCEK", "VLEK"):
        raise ValueError(f"unknown signing key {text!r} (known: VCEK, VLEK)")
    return text
