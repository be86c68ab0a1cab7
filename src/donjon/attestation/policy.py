"""Verification policy: a TOML superset of Enarx Steward's ``steward.toml``.

Loading is strict, because a typo in a security policy must not silently
widen it: an unknown key, a digest of the wrong length, or a value that is in
both an allow and a deny list is refused with the file and the key named.
The policy id is the SHA-256 of the file's bytes, so a certificate names
exactly the policy that judged it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from donjon.attestation.errors import PolicyError, ProductMismatchError
from donjon.attestation.snp import layout
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.snp.product import Product
from donjon.attestation.versionreq import VersionReq

DEFAULT_CERT_LIFETIME = timedelta(days=28)

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
    allowed_workloads: frozenset[bytes] = frozenset()
    products: frozenset[Product] = frozenset()
    signing_keys: frozenset[str] = frozenset({"VCEK", "VLEK"})
    #: "require": refuse without a current ARK CRL; "if-available": accept, say so.
    crl: CrlMode = "require"


@dataclass(frozen=True)
class SimPolicy:
    """The simulated TEE: trusted only through an explicit ARK file."""

    trust: Path | None
    snp: SnpPolicy


@dataclass(frozen=True)
class Policy:
    digest: str
    source: str
    cert_lifetime: timedelta = DEFAULT_CERT_LIFETIME
    san_dns: list[str] = field(default_factory=list)
    snp: SnpPolicy = SnpPolicy()
    sim: SimPolicy | None = None
    nil_allow: bool = False
    kvm_allow: bool = False
    #: Sections for platforms whose verification lands later; kept as loaded.
    pending: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, text: str, *, source: str, base_dir: Path) -> Policy:
        digest = hashlib.sha256(text.encode()).hexdigest()
        return _load(text, digest=digest, source=source, base_dir=base_dir)

    @classmethod
    def default(cls) -> Policy:
        """The empty policy: genuine SNP only, no debug, VMPL 0, no dev platforms."""
        return cls.from_toml("", source="<default policy>", base_dir=Path.cwd())


def load_policy(path: Path) -> Policy:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc.strerror or exc}") from exc
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: policy is not UTF-8 text") from exc
    return _load(
        text,
        digest=hashlib.sha256(data).hexdigest(),
        source=str(path),
        base_dir=path.resolve().parent,
    )


# --- loading -------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, source: str, section: str) -> None:
        self.source = source
        self.section = section

    def fail(self, key: str, message: str) -> PolicyError:
        where = f"[{self.section}] {key}" if self.section else key
        return PolicyError(f"{self.source}: {where}: {message}")


_TOP_KEYS = {"cert_lifetime", "san_dns", "snp", "sim", "nil", "kvm", "sgx", "tdx", "cca"}
_PENDING = ("sgx", "tdx", "cca")

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
    "allowed_workloads": ("allowed_workloads", 32),
}
_SNP_KEYS = set(_DIGEST_LISTS) | {
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
CRL_MODES: tuple[CrlMode, ...] = ("require", "if-available")
_PAIRS = (
    ("signer", "signer_deny"),
    ("id_key_digest", "id_key_digest_deny"),
    ("measurement", "measurement_deny"),
)


def _load(text: str, *, digest: str, source: str, base_dir: Path) -> Policy:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
    top = _Ctx(source, "")
    for key in doc:
        if key not in _TOP_KEYS:
            raise top.fail(key, f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    lifetime = _lifetime(doc.get("cert_lifetime"), top)
    san = doc.get("san_dns", [])
    if not isinstance(san, list) or not all(isinstance(s, str) and s for s in san):
        raise top.fail("san_dns", "must be a list of DNS names")
    snp = _snp(_table(doc, "snp", top), _Ctx(source, "snp"))
    sim = None
    if "sim" in doc:
        sim_doc = dict(_table(doc, "sim", top))
        ctx = _Ctx(source, "sim")
        trust_value = sim_doc.pop("trust", None)
        trust = None
        if trust_value is not None:
            if not isinstance(trust_value, str) or not trust_value:
                raise ctx.fail("trust", "must be a path to the simulator's ARK certificate")
            trust = (base_dir / trust_value).resolve()
        if "crl" in sim_doc:
            raise ctx.fail(
                "crl",
                "the simulator's hierarchy publishes no CRL, so sim evidence is always "
                'verified as crl = "if-available" (to revoke it, change [sim] trust)',
            )
        sim_snp = replace(_snp(sim_doc, ctx), crl="if-available")
        sim = SimPolicy(trust=trust, snp=sim_snp)
    nil_allow = _allow(doc, "nil", top)
    kvm_allow = _allow(doc, "kvm", top)
    pending = {name: dict(_table(doc, name, top)) for name in _PENDING if name in doc}
    return Policy(
        digest=digest,
        source=source,
        cert_lifetime=lifetime,
        san_dns=list(san),
        snp=snp,
        sim=sim,
        nil_allow=nil_allow,
        kvm_allow=kvm_allow,
        pending=pending,
    )


def _table(doc: Mapping[str, Any], name: str, ctx: _Ctx) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ctx.fail(name, "must be a table")
    return value


def _allow(doc: Mapping[str, Any], name: str, ctx: _Ctx) -> bool:
    table = _table(doc, name, ctx)
    sub = _Ctx(ctx.source, name)
    for key in table:
        if key != "allow":
            raise sub.fail(key, "unknown key (known: allow)")
    value = table.get("allow", False)
    if not isinstance(value, bool):
        raise sub.fail("allow", "must be true or false")
    return value


_LIFETIME = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _lifetime(value: Any, ctx: _Ctx) -> timedelta:
    if value is None:
        return DEFAULT_CERT_LIFETIME
    match = _LIFETIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise ctx.fail("cert_lifetime", f'expected e.g. "28d", "12h" or "90m", got {value!r}')
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 60 <= seconds <= 366 * 86400:
        raise ctx.fail("cert_lifetime", "must be between 1 minute and 366 days")
    return timedelta(seconds=seconds)


def _snp(table: Mapping[str, Any], ctx: _Ctx) -> SnpPolicy:
    for key in table:
        if key not in _SNP_KEYS:
            raise ctx.fail(key, "unknown key")
    values: dict[str, Any] = {}
    lists: dict[str, set[bytes]] = {}
    spelled: dict[str, str] = {}  # attribute -> the key as written, for messages
    for key, (attr, size) in _DIGEST_LISTS.items():
        if key in table:
            lists.setdefault(attr, set()).update(_digests(table[key], size, key, ctx))
            spelled[attr] = key
    for allow, deny in _PAIRS:
        both = lists.get(allow, set()) & lists.get(deny, set())
        if both:
            raise ctx.fail(
                spelled[deny], f"{sorted(both)[0].hex()} is in both the allow and deny lists"
            )
    values.update({attr: frozenset(v) for attr, v in lists.items()})
    if "abi" in table:
        abi = table["abi"]
        if not isinstance(abi, str):
            raise ctx.fail("abi", 'must be a version requirement such as ">=1.51"')
        try:
            values["abi"] = VersionReq.parse(abi)
        except ValueError as exc:
            raise ctx.fail("abi", str(exc)) from exc
    if "platform_info_flags" in table:
        values["platform_info_flags"] = _flags(
            table["platform_info_flags"], PLATFORM_FLAG_BITS, "platform_info_flags", ctx
        )
    for key in ("allow_debug", "allow_migration_agent"):
        if key in table:
            if not isinstance(table[key], bool):
                raise ctx.fail(key, "must be true or false")
            values[key] = table[key]
    if "policy_flags" in table:
        flags = _flags(table["policy_flags"], POLICY_FLAG_BITS, "policy_flags", ctx)
        if flags & layout.POLICY_DEBUG and not values.get("allow_debug", False):
            raise ctx.fail("policy_flags", "lists Debug, which needs allow_debug = true")
        if flags & layout.POLICY_MIGRATE_MA and not values.get("allow_migration_agent", False):
            raise ctx.fail(
                "policy_flags", "lists MigrateMA, which needs allow_migration_agent = true"
            )
        values["policy_flags"] = flags
    if "vmpl" in table:
        raw = table["vmpl"]
        items = raw if isinstance(raw, list) else [raw]
        if not items or not all(isinstance(v, int) and 0 <= v <= 3 for v in items):
            raise ctx.fail("vmpl", "must be a VMPL 0..3 or a list of them")
        values["vmpl"] = frozenset(items)
    for key in ("min_reported_tcb", "min_launch_tcb"):
        if key in table:
            values[key] = _tcb_min(table[key], key, ctx)
    if "min_firmware" in table:
        values["min_firmware"] = _firmware(table["min_firmware"], ctx)
    if "min_guest_svn" in table:
        svn = table["min_guest_svn"]
        if not isinstance(svn, int) or isinstance(svn, bool) or not 0 <= svn < 2**32:
            raise ctx.fail("min_guest_svn", "must be an integer 0..2^32-1")
        values["min_guest_svn"] = svn
    if "products" in table:
        values["products"] = frozenset(_names(table["products"], "products", ctx, Product.parse))
    if "signing_keys" in table:
        keys = _names(table["signing_keys"], "signing_keys", ctx, _signing_key)
        values["signing_keys"] = frozenset(keys)
    if "crl" in table:
        mode = table["crl"]
        if mode not in CRL_MODES:
            raise ctx.fail("crl", f'must be "require" or "if-available", got {mode!r}')
        values["crl"] = mode
    return SnpPolicy(**values)


def _digests(value: Any, size: int, key: str, ctx: _Ctx) -> set[bytes]:
    items = value if isinstance(value, list) else [value]
    out = set()
    for item in items:
        if not isinstance(item, str):
            raise ctx.fail(key, "must be a list of hex strings")
        try:
            digest = bytes.fromhex(item)
        except ValueError as exc:
            raise ctx.fail(key, f"{item!r} is not hex") from exc
        if len(digest) != size:
            raise ctx.fail(key, f"{item[:16]}... is {len(digest)} bytes, expected {size}")
        out.add(digest)
    return out


def _flags(value: Any, names: Mapping[str, int], key: str, ctx: _Ctx) -> int:
    if isinstance(value, str):
        items = [part.strip() for part in value.split("|")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ctx.fail(key, "must be a flag name or a list of flag names")
    bits = 0
    for item in items:
        if item not in names:
            raise ctx.fail(key, f"unknown flag {item!r} (known: {', '.join(names)})")
        bits |= names[item]
    return bits


def _tcb_min(value: Any, key: str, ctx: _Ctx) -> TcbMinimum:
    if not isinstance(value, dict):
        raise ctx.fail(key, "must be a table such as { bl = 3, snp = 8 }")
    for name, level in value.items():
        if name not in TCB_COMPONENTS:
            raise ctx.fail(f"{key}.{name}", f"unknown TCB component (known: {TCB_COMPONENTS})")
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 255:
            raise ctx.fail(f"{key}.{name}", "must be an integer 0..255")
    return TcbMinimum(**value)


def _firmware(value: Any, ctx: _Ctx) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", value) if isinstance(value, str) else None
    if match is None:
        raise ctx.fail("min_firmware", f'expected "major.minor[.build]", got {value!r}')
    major, minor, build = (int(g) if g else 0 for g in match.groups())
    if max(major, minor, build) > 255:
        raise ctx.fail("min_firmware", "each part must be 0..255")
    return major, minor, build


def _signing_key(text: str) -> str:
    if text not in ("VCEK", "VLEK"):
        raise ValueError(f"unknown signing key {text!r} (known: VCEK, VLEK)")
    return text


def _names(value: Any, key: str, ctx: _Ctx, convert: Callable[[str], Any]) -> list[Any]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.fail(key, "must be a list of names")
    try:
        return [convert(v) for v in value]
    except (ValueError, ProductMismatchError) as exc:
        raise ctx.fail(key, str(exc)) from exc
