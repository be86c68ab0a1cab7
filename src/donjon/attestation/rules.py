"""The policy rules every TEE shares, parsed and applied in one place.

A TEE section (``[snp]``, ``[tdx]``, ...) pins its own measurements; these
rules sit beside them in every section: which workloads may get a certificate,
whether the owner really meant to accept any workload, which TCB statuses and
vendor advisories are acceptable. ``[freshness]`` is top-level: it says whether
evidence must answer the Steward's challenge.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from donjon.attestation import packagesig
from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.errors import FreshnessError, PolicyViolationError
from donjon.attestation.packagesig import SignatureFormatError
from donjon.attestation.policytoml import SectionReader
from donjon.attestation.verdict import Checklist

#: The keys of :class:`TeeRules`, which every TEE section accepts.
RULE_KEYS = frozenset(
    {
        "allowed_workloads",
        "allowed_packages",
        "accept_any_workload",
        "tcb_statuses",
        "allowed_advisories",
    }
)


#: The keys of an ``allowed_packages`` table entry.
PACKAGE_ENTRY_KEYS = ("repository", "signer")


@dataclass(frozen=True)
class PackageSigner:
    """``{ repository = "host/path", signer = "team.pub" }`` in ``allowed_packages``."""

    #: Exact ``host[:port]/path``, or ``host[:port]/path/*`` for every repository below it.
    repository: str
    key: packagesig.PublicKey
    key_id: bytes
    #: Where the key came from (a path, or "inline PEM"), for messages.
    source: str


@dataclass(frozen=True)
class TeeRules:
    """Rules shared by every TEE section. Empty ``allowed_workloads`` means "any"."""

    allowed_workloads: frozenset[bytes] = frozenset()
    #: SHA-256 digests of OCI manifests (``donjon run oci://...@sha256:...``); empty: any.
    allowed_packages: frozenset[bytes] = frozenset()
    #: Repositories whose packages are accepted when signed by the entry's key.
    package_signers: tuple[PackageSigner, ...] = ()
    #: The owner's explicit "this section pins nothing, and that is intended".
    accept_any_workload: bool = False
    #: TCB statuses that may get a certificate; None: the TEE's own default.
    tcb_statuses: frozenset[str] | None = None
    #: Vendor advisory ids (e.g. INTEL-SA-00615) that may be outstanding.
    allowed_advisories: frozenset[str] = frozenset()


def parse_rules(table: Mapping[str, Any], reader: SectionReader) -> TeeRules:
    """The shared rules of one TEE section (its other keys are the TEE's own)."""
    workloads: frozenset[bytes] = frozenset()
    if "allowed_workloads" in table:
        workloads = frozenset(reader.digests(table["allowed_workloads"], 32, "allowed_workloads"))
    packages: frozenset[bytes] = frozenset()
    signers: tuple[PackageSigner, ...] = ()
    if "allowed_packages" in table:
        raw = table["allowed_packages"]
        items = raw if isinstance(raw, list) else [raw]
        entries = [i for i in items if isinstance(i, dict)]
        digests = [i for i in items if not isinstance(i, dict)]
        if digests:
            packages = frozenset(reader.digests(_strip_sha256(digests), 32, "allowed_packages"))
        signers = tuple(_package_signer(e, reader) for e in entries)
    statuses = None
    if "tcb_statuses" in table:
        statuses = reader.strings(table["tcb_statuses"], "tcb_statuses")
    advisories: frozenset[str] = frozenset()
    if "allowed_advisories" in table:
        advisories = reader.strings(table["allowed_advisories"], "allowed_advisories")
    return TeeRules(
        allowed_workloads=workloads,
        allowed_packages=packages,
        package_signers=signers,
        accept_any_workload=reader.boolean(table, "accept_any_workload"),
        tcb_statuses=statuses,
        allowed_advisories=advisories,
    )


def _package_signer(entry: Mapping[str, Any], reader: SectionReader) -> PackageSigner:
    key = "allowed_packages"
    for name in entry:
        if name not in PACKAGE_ENTRY_KEYS:
            nearest = difflib.get_close_matches(str(name), PACKAGE_ENTRY_KEYS, n=1)
            guess = f"did you mean {nearest[0]!r}? " if nearest else ""
            raise reader.fail(
                key,
                f"unknown key {str(name)[:40]!r} in a table entry ({guess}"
                f"known: {', '.join(PACKAGE_ENTRY_KEYS)})",
            )
    repository, signer = entry.get("repository"), entry.get("signer")
    if not isinstance(repository, str) or not isinstance(signer, str) or not signer:
        raise reader.fail(
            key, 'a table entry needs repository = "host/path" and signer = "PUBLIC-KEY.pem"'
        )
    try:
        packagesig.check_repository_pattern(repository, "repository")
    except SignatureFormatError as exc:
        raise reader.fail(key, str(exc)) from None
    try:
        public, source = packagesig.load_signer(signer, reader.base_dir or Path.cwd(), "signer")
    except SignatureFormatError as exc:
        raise reader.fail(key, str(exc)) from None
    if source != packagesig.INLINE_PEM:
        reader.referenced(Path(source))
    return PackageSigner(repository, public, packagesig.key_id(public), source)


def _strip_sha256(value: Any) -> Any:
    """Manifest digests are written ``sha256:<hex>`` (as registries print them) or bare hex."""
    items = value if isinstance(value, list) else [value]
    return [i.removeprefix("sha256:") if isinstance(i, str) else i for i in items]


def _violation(code: str, message: str) -> PolicyViolationError:
    return PolicyViolationError(message, code=code)


def apply_rules(
    rules: TeeRules,
    *,
    section: str,
    pinned: tuple[str, ...],
    tcb_status: str,
    default_statuses: frozenset[str],
    vendor_advisories: tuple[str, ...],
    workload: WorkloadClaims | None,
    checks: Checklist,
) -> None:
    """Record the shared policy checks for one appraisal (all of them run).

    ``pinned`` names the section's own keys that pin the guest's code (a launch
    measurement, or a key of the owner's that signed it); with none of them, the
    section must say ``accept_any_workload = true``. ``allowed_workloads`` and
    ``allowed_packages`` never pin: they are claims the guest makes about itself,
    and any genuine guest (one the host launched with code of its own) can make them.
    """
    checks.expect(
        "policy.pinned",
        bool(pinned) or rules.accept_any_workload,
        f"pinned by {', '.join(pinned)}"
        if pinned
        else f"[{section}] accept_any_workload = true: any genuine guest is accepted",
        lambda: _violation(
            "policy.unpinned",
            f"[{section}] pins no measurement or signer: any genuine guest would get a "
            "certificate for the workload it claims (allowed_workloads and allowed_packages "
            "only narrow what it may claim); pin one, or say accept_any_workload = true",
        ),
    )
    if rules.allowed_workloads:
        ok = workload is not None and workload.wasm_sha256 in rules.allowed_workloads
        checks.expect(
            "policy.workload",
            ok,
            f"workload {workload.wasm_sha256.hex()[:16]}... allowed" if workload else "",
            lambda: _violation(
                "policy.workload",
                "no workload claims in the CSR"
                if workload is None
                else f"workload {workload.wasm_sha256.hex()} is not in allowed_workloads",
            ),
        )
    if rules.allowed_packages or rules.package_signers:
        _check_package(rules, workload, checks)
    statuses = rules.tcb_statuses if rules.tcb_statuses is not None else default_statuses
    checks.expect(
        "policy.tcb_status",
        tcb_status in statuses,
        f"TCB status {tcb_status} accepted",
        lambda: _violation(
            "policy.tcb_status",
            f"TCB status {tcb_status} is not accepted "
            f"(tcb_statuses: {', '.join(sorted(statuses))})",
        ),
    )
    outstanding = sorted(set(vendor_advisories) - rules.allowed_advisories)
    checks.expect(
        "policy.advisories",
        not outstanding,
        "no advisories"
        if not vendor_advisories
        else f"advisories allowed: {', '.join(sorted(vendor_advisories))}",
        lambda: _violation(
            "policy.advisories",
            f"advisories not in allowed_advisories: {', '.join(outstanding)}",
        ),
    )


def _check_package(rules: TeeRules, workload: WorkloadClaims | None, checks: Checklist) -> None:
    """``allowed_packages``: a listed manifest digest, or a signature by a listed signer over
    (the claimed repository, the claimed digest). Each way to fail is its own check id."""
    package = workload.package_sha256 if workload is not None else None
    if workload is None or package is None:
        code = "policy.package"
        message = "the workload claims name no package (it was not deployed from a registry)"
        checks.fail(code, _violation(code, message))
        return
    named = f"package sha256:{package.hex()}"
    if package in rules.allowed_packages:
        checks.ok("policy.package", f"package sha256:{package.hex()[:16]}... allowed")
        return
    if not rules.package_signers:
        code = "policy.package"
        checks.fail(code, _violation(code, f"{named} is not in allowed_packages"))
        return
    repository = workload.package_repository
    entries = [
        s for s in rules.package_signers
        if repository is not None and packagesig.repository_matches(s.repository, repository)
    ]  # fmt: skip
    if not entries:
        code = "policy.package_repository"
        listed = ", ".join(sorted({s.repository for s in rules.package_signers}))
        message = (
            f"{named} is not in allowed_packages, and the claims name no repository"
            if repository is None
            else f"{named} is not in allowed_packages, and its repository {repository} is "
            f"not one allowed_packages names ({listed})"
        )
        checks.fail(code, _violation(code, message))
        return
    assert repository is not None
    verdict = packagesig.judge(
        workload.package_signatures,
        repository,
        package,
        {s.key_id: s.key for s in entries},
        whose="a signer allowed_packages names for this repository",
    )
    if verdict.ok:
        checks.ok("policy.package", f"{named[:31]}... {verdict.message}")
        return
    code = f"policy.package_{verdict.reason}"
    short = f"package sha256:{package.hex()[:16]}..."
    checks.fail(code, _violation(code, f"{short} from {repository}: {verdict.message}"))


# --- freshness -------------------------------------------------------------------------------

DonjonFreshness = Literal["require", "optional"]
EnarxFreshness = Literal["accept", "refuse"]
DEFAULT_NONCE_LIFETIME = timedelta(seconds=120)
FRESHNESS_KEYS = frozenset({"donjon", "enarx", "nonce_lifetime"})


@dataclass(frozen=True)
class FreshnessPolicy:
    """``[freshness]``: whether evidence must answer a challenge of this Steward."""

    #: Donjon CSRs (with workload claims): must their claims carry a challenge nonce?
    donjon: DonjonFreshness = "require"
    #: Enarx CSRs cannot carry a nonce: accept them (advisory evidence-not-fresh) or refuse.
    enarx: EnarxFreshness = "accept"
    nonce_lifetime: timedelta = DEFAULT_NONCE_LIFETIME


def parse_freshness(table: Mapping[str, Any], reader: SectionReader) -> FreshnessPolicy:
    reader.only(table, FRESHNESS_KEYS)
    donjon: DonjonFreshness = "require"
    if "donjon" in table:
        donjon = (
            "optional"
            if reader.choice(table["donjon"], "donjon", ("require", "optional")) == "optional"
            else "require"
        )
    enarx: EnarxFreshness = "accept"
    if "enarx" in table:
        enarx = (
            "refuse"
            if reader.choice(table["enarx"], "enarx", ("accept", "refuse")) == "refuse"
            else "accept"
        )
    lifetime = DEFAULT_NONCE_LIFETIME
    if "nonce_lifetime" in table:
        lifetime = reader.duration(
            table["nonce_lifetime"],
            "nonce_lifetime",
            low=timedelta(seconds=5),
            high=timedelta(hours=1),
            example="120s",
        )
    return FreshnessPolicy(donjon=donjon, enarx=enarx, nonce_lifetime=lifetime)


def check_freshness(
    policy: FreshnessPolicy, workload: WorkloadClaims | None, checks: Checklist
) -> bool:
    """Record ``freshness.nonce``; True when the evidence carries no challenge at all.

    The verifier only sees whether a nonce is there: that the Steward gave it,
    that it has not expired and that it is used once is the Steward's check
    against its store.
    """
    if workload is None:
        checks.expect(
            "freshness.nonce",
            policy.enarx == "accept",
            'Enarx CSR: no challenge possible; accepted ([freshness] enarx = "accept"), '
            "the certificate says evidence-not-fresh",
            lambda: FreshnessError(
                "Enarx CSRs carry no challenge nonce, and the policy says [freshness] enarx = "
                '"refuse"',
                code="freshness.enarx_refused",
            ),
        )
        return True
    if workload.nonce is None:
        checks.expect(
            "freshness.nonce",
            policy.donjon == "optional",
            'no challenge nonce; accepted ([freshness] donjon = "optional")',
            lambda: FreshnessError(
                "the workload claims carry no challenge nonce: ask POST /v1/challenge first "
                '(or set [freshness] donjon = "optional")',
                code="freshness.nonce_missing",
            ),
        )
        return True
    checks.ok(
        "freshness.nonce",
        f"challenge nonce {workload.nonce.hex()[:16]}... (the Steward accepts it once)",
    )
    return False
