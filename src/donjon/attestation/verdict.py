"""The structured outcome of verifying evidence: every check, the verdict, the claims.

Check ids are stable strings (``snp.signature``, ``snp.chain``,
``binding.report_data``, ``policy.measurement``...): tools and tests key on
them, people read the reasons. Cryptographic and structural checks stop at
the first failure (nothing after a bad signature means anything); policy
checks are all evaluated so that an operator sees every reason at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from donjon.attestation.claims import AttestationResult
from donjon.attestation.errors import (
    AttestationError,
    MalformedEvidenceError,
    VerifierInternalError,
)
from donjon.errors import plain

if TYPE_CHECKING:
    from donjon.attestation.rules import TeeRules

T = TypeVar("T")

#: The platform of a verdict refused before its evidence extension was read (unparsable
#: CSR, bad self-signature, no evidence): nothing says which it is. Never in an issued
#: result (``claims.PLATFORMS`` refuses it).
UNKNOWN_PLATFORM = "unknown"


#: A check's status: done and passed, done and failed, or deliberately not done.
PASSED = "passed"
FAILED = "failed"
NOT_CHECKED = "not_checked"


@dataclass(frozen=True)
class Check:
    """One check. ``passed`` says whether it stopped the evidence (kept for callers that
    only ask that); ``status`` also tells a check that was not done (revocation without a
    CRL under ``if-available``, a key binding a bare report cannot have) from one that
    passed, so no output shows ✔ for something nobody checked."""

    id: str
    passed: bool
    reason: str
    not_checked: bool = False

    @property
    def status(self) -> str:
        if self.not_checked:
            return NOT_CHECKED
        return PASSED if self.passed else FAILED

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "passed": self.passed, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class Appraisal:
    """What one TEE's verifier concluded from genuine evidence, in every TEE's terms.

    The verifier has recorded its own checks (chain, signature, binding, its
    section's pins); the rules every TEE shares are applied to this afterwards.
    """

    platform: str
    product: str
    measurement: bytes
    tcb: str
    tcb_status: str
    debug: bool
    #: The policy section that judged it, its shared rules, and which of its keys pin.
    section: str
    rules: TeeRules | None  # None: a development platform, judged by its own allowance
    pinned: tuple[str, ...] = ()
    #: The statuses the TEE accepts when the section names none.
    default_statuses: frozenset[str] = frozenset()
    vendor_advisories: tuple[str, ...] = ()
    #: Donjon's own advisories for the certificate (revocation-not-checked, ...).
    notes: tuple[str, ...] = ()
    development: bool = False
    not_after_limit: datetime | None = None
    #: Whether a current vendor CRL was checked (None: no vendor chain was judged).
    revocation_checked: bool | None = None
    crl_mode: str | None = None
    #: Decoded evidence for display, built on demand (verification does not pay for it).
    describe: Callable[[], dict[str, Any]] | None = None
    #: The instant the evidence was judged at, when the verifier was asked to use another
    #: than the context's (a bare Nitro document, at its own timestamp); None: ``ctx.now``.
    evaluated_at: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    checks: tuple[Check, ...]
    reason: str | None  # id of the first failed check, None if accepted
    error: AttestationError | None  # the typed error of the first failure
    platform: str  # snp | sim | nil | kvm | sgx | tdx | cca, or "unknown" before evidence is read
    result: AttestationResult | None  # claims for the certificate, when accepted
    evidence_sha256: str  # hex digest of the evidence extension value
    not_after_limit: datetime | None  # latest validity the collateral allows
    csr: x509.CertificateSigningRequest | None
    evaluated_at: datetime | None = None
    #: The TEE verifier's conclusion, when it got past the cryptography.
    appraisal: Appraisal | None = None
    crl_mode: str | None = None  # "require" | "if-available" when a vendor chain was judged

    @property
    def revocation_checked(self) -> bool | None:
        """Whether a current CRL of the vendor root was checked (None: no chain judged)."""
        return None if self.appraisal is None else self.appraisal.revocation_checked

    @cached_property
    def details(self) -> dict[str, Any] | None:
        """Decoded evidence for display (built on demand: verification does not pay for it)."""
        if self.appraisal is None or self.appraisal.describe is None:
            return None
        return self.appraisal.describe()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json``)."""
        return {
            "accepted": self.accepted,
            "platform": self.platform,
            "reason": self.reason,
            "error": None
            if self.error is None
            else {"code": self.error.code, "message": self.error.message},
            "evaluated_at": self.evaluated_at.isoformat() if self.evaluated_at else None,
            "evidence_sha256": self.evidence_sha256,
            "not_after_limit": self.not_after_limit.isoformat() if self.not_after_limit else None,
            "revocation": {"crl_mode": self.crl_mode, "checked": self.revocation_checked},
            "checks": [c.to_dict() for c in self.checks],
            "result": None if self.result is None else _result_dict(self.result),
            "details": self.details,
        }


def _result_dict(result: AttestationResult) -> dict[str, Any]:
    workload = result.workload
    return {**result.to_json(), "workload": None if workload is None else workload.to_json()}


class Stop(Exception):
    """Raised inside a verification pipeline after a fail-fast check has been recorded."""


class Checklist:
    """Collects checks in order and remembers the first failure."""

    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.error: AttestationError | None = None
        self.first_failed: str | None = None

    def ok(self, check_id: str, reason: str) -> None:
        self.checks.append(Check(check_id, True, reason))

    def not_checked(self, check_id: str, reason: str) -> None:
        """Record a check that was deliberately not done; it stops nothing."""
        self.checks.append(Check(check_id, True, reason, not_checked=True))

    def fail(self, check_id: str, error: AttestationError) -> None:
        self.checks.append(Check(check_id, False, error.message))
        if self.error is None:
            self.error = error
            self.first_failed = check_id

    def step(
        self,
        check_id: str,
        fn: Callable[[], tuple[T, str]],
        *,
        not_done: Callable[[T], bool] | None = None,
    ) -> T:
        """Run a fail-fast check: ``fn`` returns (value, reason) or raises.

        ``not_done(value)`` true: the step found nothing to check (a TCB not appraised
        under ``if-available``), recorded as not checked rather than passed."""
        try:
            value, reason = fn()
        except AttestationError as error:
            self.fail(check_id, error)
            raise Stop from error
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            # A library refusing hostile input (a bad key encoding, an odd ASN.1 shape)
            # is a malformed-evidence verdict, never an exception for the caller.
            malformed = MalformedEvidenceError(f"malformed input: {plain(exc)}")
            self.fail(check_id, malformed)
            raise Stop from exc
        except Exception as exc:  # fail closed: a verifier bug must refuse, not crash a Steward
            internal = VerifierInternalError(f"{type(exc).__name__}: {str(exc)[:120]}")
            self.fail(check_id, internal)
            raise Stop from exc
        if not_done is not None and not_done(value):
            self.not_checked(check_id, reason)
        else:
            self.ok(check_id, reason)
        return value

    def expect(
        self, check_id: str, passed: bool, ok_reason: str, error: Callable[[], AttestationError]
    ) -> None:
        """Record a policy check that does not stop evaluation."""
        if passed:
            self.ok(check_id, ok_reason)
        else:
            self.fail(check_id, error())

    @property
    def passed(self) -> bool:
        return self.error is None
