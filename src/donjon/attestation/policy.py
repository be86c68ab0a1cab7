"""Verification policy: a TOML superset of Enarx Steward's ``steward.toml``.

Loading is strict, because a typo in a security policy must not silently
widen it: an unknown key, a digest of the wrong length, or a value that is in
both an allow and a deny list is refused with the file and the key named.
The policy id is the SHA-256 of the file's bytes, so a certificate names
exactly the policy that judged it.

This module only dispatches: each TEE's section is parsed by the module beside
its verifier (``snp/policy.py``, ...), the rules every TEE shares by
``rules.py``. A TEE whose section is absent is not accepted at all.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from donjon.attestation.azure.policy import parse_azure
from donjon.attestation.cca.policy import parse_cca
from donjon.attestation.errors import PolicyError
from donjon.attestation.nitro.policy import parse_nitro
from donjon.attestation.policytoml import SectionReader, table_of
from donjon.attestation.rules import FreshnessPolicy, TeeRules, parse_freshness
from donjon.attestation.sgx.policy import SgxPolicy, parse_sgx
from donjon.attestation.snp.policy import (
    CRL_MODES,
    PLATFORM_FLAG_BITS,
    POLICY_FLAG_BITS,
    POLICY_FLAGS_MASK,
    TCB_COMPONENTS,
    SnpPolicy,
    TcbMinimum,
    parse_snp,
)
from donjon.attestation.tdx.policy import TDX_KEYS, TdxPolicy, parse_tdx

__all__ = [
    "CRL_MODES",
    "DEFAULT_CERT_LIFETIME",
    "PLATFORM_FLAG_BITS",
    "POLICY_FLAGS_MASK",
    "POLICY_FLAG_BITS",
    "TCB_COMPONENTS",
    "TEE_SECTIONS",
    "Policy",
    "SgxPolicy",
    "SimPolicy",
    "SimTdxPolicy",
    "SnpPolicy",
    "TcbMinimum",
    "TdxPolicy",
    "TeeSection",
    "load_policy",
]

DEFAULT_CERT_LIFETIME = timedelta(days=28)


class TeeSection(Protocol):
    """A parsed TEE section: its shared rules, and which of its own keys pin the guest."""

    @property
    def rules(self) -> TeeRules: ...

    def pinned(self) -> tuple[str, ...]: ...


#: Parser of each TEE section, by section name. Adding a TEE adds an entry.
TEE_SECTIONS: Mapping[str, Callable[[Mapping[str, Any], SectionReader], TeeSection]] = {
    "snp": parse_snp,
    "cca": parse_cca,
    "nitro": parse_nitro,
    "tdx": parse_tdx,
    "sgx": parse_sgx,
    "azure": parse_azure,
}


@dataclass(frozen=True)
class SimTdxPolicy:
    """``[sim.tdx]``: the simulator's TDX product, trusted only through its root file."""

    trust: Path | None
    policy: TdxPolicy


@dataclass(frozen=True)
class SimPolicy:
    """The simulated TEE: trusted only through an explicit ARK file (``[sim.tdx]``: root)."""

    trust: Path | None
    snp: SnpPolicy
    #: The simulator's CCA platform key (``[sim] cca_cpak``): sim CCA tokens are trusted
    #: through it alone, and labelled development.
    cca_cpak: Path | None = None
    tdx: SimTdxPolicy | None = None


@dataclass(frozen=True)
class Policy:
    #: The policy id in every certificate (``_policy_id``: the file and the files it names).
    digest: str
    source: str
    cert_lifetime: timedelta = DEFAULT_CERT_LIFETIME
    san_dns: list[str] = field(default_factory=list)
    #: The TEE sections the file has, parsed; a TEE without a section is refused.
    tees: Mapping[str, TeeSection] = field(default_factory=dict)
    sim: SimPolicy | None = None
    nil_allow: bool = False
    kvm_allow: bool = False
    freshness: FreshnessPolicy = field(default_factory=FreshnessPolicy)
    #: SHA-256 of the policy file's bytes alone ("" for a policy built in code).
    text_digest: str = ""

    @property
    def snp(self) -> SnpPolicy | None:
        section = self.tees.get("snp")
        return section if isinstance(section, SnpPolicy) else None

    def unpinned(self) -> list[str]:
        """One message per TEE section that would accept any guest without saying so.

        ``allowed_workloads`` and ``allowed_packages`` pin nothing: they are what a guest
        claims, and a guest the host launched with its own code claims what it likes.
        """
        out = []
        for name, section in sorted(self.tees.items()):
            if section.pinned() or section.rules.accept_any_workload:
                continue
            rules = section.rules
            narrowed = [
                key
                for key, values in (
                    ("allowed_workloads", rules.allowed_workloads),
                    ("allowed_packages", rules.allowed_packages or rules.package_signers),
                )
                if values
            ]
            but = f" ({' and '.join(narrowed)} only narrow what a guest claims)" if narrowed else ""
            out.append(
                f"[{name}] pins nothing (no {_PIN_HINTS.get(name, 'measurement')}){but}: any "
                f"genuine {name} guest on any cloud would get a certificate; pin one, or say "
                f"accept_any_workload = true in [{name}]"
            )
        return out

    def accepting_any(self) -> list[str]:
        """The TEE sections that opted into accepting any workload (logged at start)."""
        return sorted(
            name
            for name, section in self.tees.items()
            if section.rules.accept_any_workload and not section.pinned()
        )

    @classmethod
    def from_toml(cls, text: str, *, source: str, base_dir: Path) -> Policy:
        digest = hashlib.sha256(text.encode()).hexdigest()
        return _load(text, digest=digest, source=source, base_dir=base_dir)

    @classmethod
    def default(cls) -> Policy:
        """The offline appraisal policy (``donjon attest verify`` without ``--policy``).

        Every TEE with its section's defaults (no debug, VMPL 0, revocation
        required...) and ``accept_any_workload``: it judges whether evidence is
        genuine, not whose workload it is. No development platform. A Steward
        never uses it: ``steward serve`` needs a policy file.
        """
        text = "".join(f"[{name}]\naccept_any_workload = true\n" for name in TEE_SECTIONS)
        return cls.from_toml(text, source="<default policy>", base_dir=Path.cwd())


#: What to pin, per TEE section, for the start-up refusal's message.
_PIN_HINTS: dict[str, str] = {
    "snp": "measurement/hash, signer or id_key_digest",
    "cca": "rim or realm reference_values",
    "nitro": "pcr0, pcr1, pcr2 or pcr8",
    "tdx": "mrtd, with rtmr0-3 beside it",
    "sgx": "signer/hash (MRSIGNER/MRENCLAVE)",
    "azure": "pcrs, [azure.snp] measurement or [azure.tdx] mrtd",
}


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

_GENERAL_KEYS = {"cert_lifetime", "san_dns", "sim", "nil", "kvm", "freshness"}


def _load(text: str, *, digest: str, source: str, base_dir: Path) -> Policy:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
    top = SectionReader(source, "", base_dir)
    top.only(doc, _GENERAL_KEYS | set(TEE_SECTIONS))
    lifetime = DEFAULT_CERT_LIFETIME
    if "cert_lifetime" in doc:
        lifetime = top.duration(
            doc["cert_lifetime"],
            "cert_lifetime",
            low=timedelta(minutes=1),
            high=timedelta(days=366),
            example="28d",
        )
    san = doc.get("san_dns", [])
    if not isinstance(san, list) or not all(isinstance(s, str) and s for s in san):
        raise top.fail("san_dns", "must be a list of DNS names")
    tees = {
        name: parse(table_of(doc, name, top), top.child(name))
        for name, parse in TEE_SECTIONS.items()
        if name in doc
    }
    sim = _sim(doc, top, base_dir) if "sim" in doc else None
    freshness = parse_freshness(table_of(doc, "freshness", top), top.child("freshness"))
    return Policy(
        digest=_policy_id(digest, top.files),
        text_digest=digest,
        source=source,
        cert_lifetime=lifetime,
        san_dns=list(san),
        tees=tees,
        sim=sim,
        nil_allow=_allow(doc, "nil", top),
        kvm_allow=_allow(doc, "kvm", top),
        freshness=freshness,
    )


def _policy_id(text_digest: str, files: Mapping[str, str]) -> str:
    """The policy id in every certificate: the file's SHA-256, or, when the policy names
    files (signer keys, roots, reference values), a SHA-256 over it and their digests, so
    that replacing such a file gives the policy a new id."""
    if not files:
        return text_digest
    lines = [f"donjon-policy-id-v2\n{text_digest}\n"]
    lines += [f"{name}\n{files[name]}\n" for name in sorted(files)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _sim(doc: Mapping[str, Any], top: SectionReader, base_dir: Path) -> SimPolicy:
    sim_doc = dict(table_of(doc, "sim", top))
    reader = top.child("sim")
    tdx = _sim_tdx(sim_doc.pop("tdx"), reader, base_dir) if "tdx" in sim_doc else None
    trust = _trust_path(sim_doc.pop("trust", None), reader, base_dir, "ARK")
    cca_value = sim_doc.pop("cca_cpak", None)
    cca_cpak = None
    if cca_value is not None:
        if not isinstance(cca_value, str) or not cca_value:
            raise reader.fail("cca_cpak", "must be a path to the simulator's CPAK (PEM or JWK)")
        cca_cpak = (base_dir / cca_value).resolve()
    if "crl" in sim_doc:
        raise reader.fail(
            "crl",
            "the simulator's hierarchy publishes no CRL, so sim evidence is always "
            'verified as crl = "if-available" (to revoke it, change [sim] trust)',
        )
    snp = replace(parse_snp(sim_doc, reader), crl="if-available")
    return SimPolicy(trust=trust, snp=snp, cca_cpak=cca_cpak, tdx=tdx)


def _sim_tdx(value: Any, top: SectionReader, base_dir: Path) -> SimTdxPolicy:
    """``[sim.tdx]``: ``trust = "root.pem"`` (the simulator's Intel-like root) and [tdx] keys."""
    reader = top.child("sim.tdx")
    if not isinstance(value, dict):
        raise top.fail("tdx", "must be a table ([sim.tdx])")
    table = dict(value)
    trust = _trust_path(table.pop("trust", None), reader, base_dir, "TDX root certificate")
    reader.only(table, TDX_KEYS)
    return SimTdxPolicy(trust=trust, policy=parse_tdx(table, reader))


def _trust_path(value: Any, reader: SectionReader, base_dir: Path, what: str) -> Path | None:
    """A simulator's root file, relative to the policy file (None: not given)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise reader.fail("trust", f"must be a path to the simulator's {what}")
    path = (base_dir / value).resolve()
    reader.referenced(path)
    return path


def _allow(doc: Mapping[str, Any], name: str, top: SectionReader) -> bool:
    table = table_of(doc, name, top)
    reader = SectionReader(top.source, name)
    for key in table:
        if key != "allow":
            raise reader.fail(key, "unknown key (known: allow)")
    return reader.boolean(table, "allow")
