"""The Steward's core: verify a CSR's evidence, issue, and audit. No HTTP here.

The order matters and is the product's promise: verify (fail closed), sign,
commit the audit record, and only then hand the certificate out.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from donjon.attestation.claims import REVOCATION_NOT_CHECKED
from donjon.attestation.verdict import UNKNOWN_PLATFORM
from donjon.steward.ca import CertificateAuthority
from donjon.steward.contract import PolicyLike, VerdictLike, Verifier
from donjon.steward.crl import REASONS, build_crl
from donjon.steward.errors import (
    AttestationRefused,
    EvidenceNotAuthentic,
    MalformedRequest,
    StewardError,
)
from donjon.steward.issue import Issued, issue_certificate
from donjon.steward.metrics import StewardMetrics
from donjon.steward.store import AuditStore, CertificateRecord, Rejection

log = logging.getLogger("donjon.steward")

Clock = Callable[[], datetime]

# Words in a failed check id (or error code) that say the evidence is not authentic,
# or that the request itself was malformed; anything else is a policy refusal.
_AUTHENTICITY_WORDS = frozenset(
    {
        "signature",
        "chain",
        "binding",
        "revoked",
        "expired",
        "crl",
        "root",
        "vcek",
        "vlek",
        "pck",
        "collateral",
        "fingerprint",
        "authentic",
        "authenticity",
        "trust",
    }
)
_MALFORMED_WORDS = frozenset(
    {
        "malformed",
        "parse",
        "decode",
        "format",
        "der",
        "csr",
        "extension",
        "extensions",
        "size",
        "truncated",
    }
)


def _words(text: str) -> set[str]:
    for sep in ".:/_ ":
        text = text.replace(sep, "-")
    return {w for w in text.lower().split("-") if w}


def classify(verdict: VerdictLike) -> type[StewardError]:
    """Map a refusing verdict to 400 (malformed), 401 (not authentic) or 403 (policy)."""
    if verdict.csr is None:
        return MalformedRequest
    code = str(getattr(verdict.error, "code", "") or "")
    words = _words(f"{verdict.reason or ''} {code}")
    if words & _AUTHENTICITY_WORDS:
        return EvidenceNotAuthentic
    if words & _MALFORMED_WORDS:
        return MalformedRequest
    return AttestationRefused


def checks_json(verdict: VerdictLike) -> list[dict[str, Any]]:
    return [{"id": c.id, "passed": bool(c.passed), "reason": c.reason} for c in verdict.checks]


def verdict_json(verdict: VerdictLike) -> dict[str, Any]:
    return {
        "accepted": bool(verdict.accepted),
        "platform": verdict.platform,
        "reason": verdict.reason,
        "error_code": getattr(verdict.error, "code", None),
        "evidence_sha256": verdict.evidence_sha256,
        "not_after_limit": verdict.not_after_limit.isoformat() if verdict.not_after_limit else None,
        "checks": checks_json(verdict),
    }


def result_json(issued: Issued) -> dict[str, Any]:
    claims = issued.result.to_json()
    if issued.workload is not None:
        claims["workload"] = issued.workload.to_json()
    return claims


@dataclass(frozen=True)
class Attestation:
    """What one request produced: the verdicts and the certificates issued for them."""

    verdicts: tuple[VerdictLike, ...]
    issued: tuple[Issued, ...]


class Steward:
    def __init__(
        self,
        *,
        ca: CertificateAuthority,
        policy: PolicyLike,
        trust: Any,
        store: AuditStore,
        verifier: Verifier,
        clock: Clock,
        metrics: StewardMetrics | None = None,
    ) -> None:
        self.ca = ca
        self.policy = policy
        self.trust = trust
        self.store = store
        self.verifier = verifier
        self.clock = clock
        self.metrics = metrics or StewardMetrics()

    def _verify(self, csr_der: bytes, now: datetime) -> VerdictLike:
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            # Concurrent calls are fine: the engine's trust store is safe for concurrent use.
            verdict = self.verifier(csr_der, policy=self.policy, trust=self.trust, now=now)
        except Exception as exc:
            # The engine promises never to raise for bad input; if it does anyway, this
            # input is what broke it. Refuse it (fail closed) and keep the traceback.
            log.exception("the verifier raised on a request (refused as malformed)")
            raise MalformedRequest(
                f"the evidence could not be processed ({type(exc).__name__})", check="verifier"
            ) from None
        finally:
            self.metrics.in_flight.dec()
            self.metrics.verify_seconds.observe(time.perf_counter() - started)
        return verdict

    def _refuse(
        self, error: StewardError, *, platform: str, evidence_sha256: str, now: datetime
    ) -> StewardError:
        reason = error.check or error.code
        platform = platform or UNKNOWN_PLATFORM
        self.metrics.verdicts.labels(platform, "refused", reason).inc()
        log.warning(
            "refused attestation: platform=%s reason=%s status=%d evidence_sha256=%s: %s",
            platform,
            reason,
            error.status,
            evidence_sha256,
            error.message,
        )
        try:
            self.store.record_rejection(
                Rejection(
                    at=now,
                    reason=reason,
                    status=error.status,
                    platform=platform,
                    evidence_sha256=evidence_sha256,
                    detail=error.message,
                )
            )
        except StewardError as exc:  # the refusal stands even if it cannot be counted
            log.error("could not record a rejection: %s", exc.message)
        error.evidence_sha256 = evidence_sha256
        return error

    def attest(self, csr_ders: Sequence[bytes]) -> Attestation:
        """Verify every CSR, then issue all or none, commit the audit rows, then return."""
        now = self.clock()
        verdicts: list[VerdictLike] = []
        issued: list[Issued] = []
        for der in csr_ders:
            try:
                verdict = self._verify(der, now)
            except StewardError as exc:
                raise self._refuse(
                    exc,
                    platform=UNKNOWN_PLATFORM,
                    evidence_sha256=hashlib.sha256(der).hexdigest(),
                    now=now,
                ) from None
            verdicts.append(verdict)
            digest = verdict.evidence_sha256 or hashlib.sha256(der).hexdigest()
            if not verdict.accepted:
                kind = classify(verdict)
                failed = next((c for c in verdict.checks if not c.passed), None)
                detail = failed.reason if failed is not None else "refused by the verifier"
                check = verdict.reason or (failed.id if failed is not None else kind.code)
                raise self._refuse(
                    kind(
                        f"attestation refused: {check}: {detail}",
                        check=check,
                        checks=checks_json(verdict),
                    ),
                    # No CSR was parsed, so nothing names a platform, whatever the verdict says.
                    platform=verdict.platform if verdict.csr is not None else UNKNOWN_PLATFORM,
                    evidence_sha256=digest,
                    now=now,
                )
            try:
                issued.append(issue_certificate(self.ca, verdict, self.policy, now=now))
            except StewardError as exc:
                exc.checks = checks_json(verdict)
                raise self._refuse(
                    exc, platform=verdict.platform, evidence_sha256=digest, now=now
                ) from None
        records = [
            CertificateRecord(
                serial=item.serial_hex,
                issued_at=now,
                not_before=item.certificate.not_valid_before_utc,
                not_after=item.certificate.not_valid_after_utc,
                subject_key_sha256=item.subject_key_sha256,
                platform=item.result.platform,
                development=item.result.development,
                workload_sha256=item.workload.wasm_sha256.hex() if item.workload else None,
                claims=result_json(item),
                verdict=verdict_json(verdict),
                evidence_sha256=verdict.evidence_sha256,
                policy_digest=self.policy.digest,
                certificate_der=item.der,
            )
            for item, verdict in zip(issued, verdicts, strict=True)
        ]
        self.store.record_issued(records)  # before anything is returned
        for item, verdict in zip(issued, verdicts, strict=True):
            self.metrics.verdicts.labels(verdict.platform, "accepted", "").inc()
            self.metrics.issued.inc()
            log.info(
                "issued certificate serial=%s platform=%s development=%s evidence_sha256=%s",
                item.serial_hex,
                item.result.platform,
                item.result.development,
                verdict.evidence_sha256,
            )
            if REVOCATION_NOT_CHECKED in item.result.advisories:
                revocation = next((c for c in verdict.checks if c.id == "snp.revocation"), None)
                log.warning(
                    "REVOCATION NOT CHECKED for certificate serial=%s platform=%s (policy crl = "
                    '"if-available"; advisory in the certificate): %s',
                    item.serial_hex,
                    item.result.platform,
                    revocation.reason if revocation is not None else "no current vendor CRL",
                )
        return Attestation(verdicts=tuple(verdicts), issued=tuple(issued))

    def readiness(self) -> dict[str, str]:
        """What keeps this replica from serving: {} when the store and the CA key both work."""
        failed: dict[str, str] = {}
        try:
            self.store.ping()
        except StewardError as exc:
            failed["database"] = exc.message
        try:
            self.ca.probe()
        except StewardError as exc:
            failed["ca-key"] = exc.message
        return failed

    def crl(self) -> x509.CertificateRevocationList:
        return build_crl(self.ca, self.store.revoked(), now=self.clock())

    def revoke(self, serial: str, *, reason: str = "unspecified") -> CertificateRecord:
        if reason not in REASONS:
            raise MalformedRequest(
                f"unknown revocation reason {reason!r}: use one of {', '.join(REASONS)}",
                check="reason",
            )
        record = self.store.revoke(serial, reason=reason, at=self.clock())
        self.metrics.revoked.inc()
        log.warning("revoked certificate serial=%s reason=%s", record.serial, reason)
        return record
