"""The registry of evidence verifiers: one entry per evidence format, keyed by OID.

The Steward, ``donjon attest`` and the relying party find a verifier here;
adding a TEE adds an entry (``verifiers.py``), and nothing else dispatches on
the platform's name.

An entry verifies one evidence value (a CSR extension, or a bare file that
``donjon attest`` recognised), records its checks in the context's checklist,
and returns an :class:`~donjon.attestation.verdict.Appraisal`. It raises
:class:`~donjon.attestation.verdict.Stop` after recording a failure that
leaves nothing more to judge.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from cryptography.x509 import ObjectIdentifier

from donjon.attestation import binding
from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.errors import PlatformNotAllowedError, ReportDataMismatchError
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.snp.product import Product
from donjon.attestation.verdict import Appraisal, Checklist

if TYPE_CHECKING:
    from donjon.attestation.policy import Policy
    from donjon.attestation.trust import TrustStore

TcbMode = Literal["require", "if-available"]


@dataclass(frozen=True)
class Subject:
    """What the evidence must bind: the CSR's public key and, for Donjon CSRs, its claims."""

    spki: bytes
    claims_der: bytes | None
    workload: WorkloadClaims | None


@dataclass(frozen=True)
class VerifyOptions:
    """An operator's overrides for an offline check; a Steward leaves them all unset."""

    crl_mode: CrlMode | None = None
    #: DCAP-style TCB collateral: "if-available" verifies signature and chain without it.
    tcb_mode: TcbMode | None = None
    product: Product | None = None
    #: Per-TEE material given on the command line (a VCEK, a collateral file, a CPAK...).
    material: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class VerifyContext:
    checks: Checklist
    policy: Policy
    trust: TrustStore
    now: datetime
    options: VerifyOptions
    #: None for bare evidence (no CSR, so no key to bind).
    subject: Subject | None
    #: The revocation mode a vendor chain check ran with, for a verdict refused mid-way.
    used_crl_mode: CrlMode | None = None


class EvidenceVerifier(Protocol):
    """One evidence format's verifier (SNP, sim, TDX, ...)."""

    @property
    def platform(self) -> str: ...

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        """Verify a CSR evidence extension's value."""
        ...

    def show(self, value: bytes) -> dict[str, Any]:
        """Decode a CSR evidence extension's value for display, verifying nothing."""
        ...


class BareVerifier(Protocol):
    """Verifies evidence given as a file on its own (``donjon attest verify FILE``)."""

    def verify_bare(self, data: bytes, ctx: VerifyContext) -> Appraisal: ...

    def show_bare(self, data: bytes) -> dict[str, Any]:
        """Decode the file's evidence for display (JSON-ready: bytes as lowercase hex)."""
        ...


@dataclass(frozen=True)
class BareFormat:
    """A file form ``donjon attest`` recognises: ``sniff`` returns the evidence, or None."""

    name: str
    platform: str
    sniff: Callable[[bytes], bytes | None]
    verifier: BareVerifier


class Registry:
    """Verifiers by evidence OID, and the bare file forms, in the order they are tried."""

    def __init__(
        self,
        entries: Mapping[ObjectIdentifier, EvidenceVerifier],
        bare: Iterable[BareFormat] = (),
    ) -> None:
        self._entries = dict(entries)
        self.bare_formats: tuple[BareFormat, ...] = tuple(bare)

    def get(self, oid: ObjectIdentifier) -> EvidenceVerifier | None:
        return self._entries.get(oid)

    @property
    def oids(self) -> frozenset[ObjectIdentifier]:
        return frozenset(self._entries)

    def platform_of(self, oid: ObjectIdentifier) -> str:
        entry = self._entries.get(oid)
        return entry.platform if entry is not None else "unknown"

    def recognise(self, data: bytes) -> tuple[BareFormat, bytes] | None:
        for form in self.bare_formats:
            found = form.sniff(data)
            if found is not None:
                return form, found
        return None


# --- steps every verifier shares ---------------------------------------------------------------


def section_of(ctx: VerifyContext, name: str) -> Any:
    """The policy's ``[name]`` section, or a ``platform.allowed`` refusal when it has none."""

    def find() -> tuple[Any, str]:
        section = ctx.policy.tees.get(name)
        if section is None:
            raise PlatformNotAllowedError(
                f"the policy has no [{name}] section, so {name} evidence is not accepted: "
                f"add one that pins the workload"
            )
        return section, f"[{name}] section of the policy"

    return ctx.checks.step("platform.allowed", find)


def check_binding(
    ctx: VerifyContext,
    report_data: bytes,
    *,
    enarx: binding.Binding | None,
    size: int = binding.REPORT_DATA_SIZE,
) -> None:
    """Record ``binding.report_data``: the evidence's caller data names the CSR's key.

    ``enarx`` is the binding an Enarx CSR (no claims) uses on this TEE, or None
    where Enarx defined none. ``size`` cuts the expected value where the TEE
    carries fewer than 64 bytes (a TPM's qualifying data, say).
    """
    subject = ctx.subject
    if subject is None:  # never shown as passed: nothing was compared
        ctx.checks.not_checked("binding.report_data", "not checked: bare evidence binds no key")
        return

    def compare() -> tuple[None, str]:
        if subject.claims_der is not None:
            want = binding.donjon_report_data(subject.spki, subject.claims_der)[:size]
            if hmac.compare_digest(report_data, want):
                return None, "report_data = SHA-512(CSR SPKI || workload claims)"
            raise ReportDataMismatchError(
                "report_data is not SHA-512(CSR public key || workload claims): "
                "the evidence was made for another key or workload"
            )
        if enarx is None:
            raise ReportDataMismatchError(
                "this evidence needs Donjon workload claims to bind the CSR key (no Enarx form)"
            )
        want = binding.expected_report_data(enarx, subject.spki, None)[:size]
        if hmac.compare_digest(report_data, want):
            what = "SHA-384" if enarx is binding.Binding.ENARX_SHA384 else "SHA-256"
            return None, f"report_data = {what}(CSR SPKI), zero-padded"
        raise ReportDataMismatchError(
            "report_data is not the hash of the CSR public key: "
            "the evidence was made for another key"
        )

    ctx.checks.step("binding.report_data", compare)
