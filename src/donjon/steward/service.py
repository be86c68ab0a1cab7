"""The Steward's core: verify a CSR's evidence, issue, and audit. No HTTP here.

The order matters and is the product's promise: verify (fail closed), sign,
commit the audit record, and only then hand the certificate out.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from donjon.attestation.claims import (
    EVIDENCE_NOT_FRESH,
    REVOCATION_NOT_CHECKED,
    TCB_NOT_APPRAISED,
)
from donjon.attestation.verdict import UNKNOWN_PLATFORM
from donjon.steward import challenges
from donjon.steward.ca import CertificateAuthority
from donjon.steward.contract import PolicyLike, VerdictLike, Verifier
from donjon.steward.crl import CRL_VALIDITY, REASONS, build_crl
from donjon.steward.errors import (
    AttestationRefused,
    EvidenceNotAuthentic,
    KeyRevoked,
    MalformedRequest,
    NotFresh,
    StewardError,
)
from donjon.steward.issue import Issued, csr_workload_claims, issue_certificate
from donjon.steward.metrics import StewardMetrics
from donjon.steward.refusals import RefusalRecorder, bounded
from donjon.steward.store import AuditStore, CertificateRecord, NonceAlreadyUsed, UsedNonce

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
    """The checks for an answer or an audit row; reasons that quote the request are bounded."""
    return [
        {"id": c.id, "passed": bool(c.passed), "status": c.status, "reason": bounded(c.reason)}
        for c in verdict.checks
    ]


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


_NONCE_REFUSALS = {
    "unknown": "the challenge nonce was not given by this Steward (or its store)",
    "used": "the challenge nonce was already used: evidence is accepted once per challenge",
    "expired": "the challenge nonce expired before the evidence arrived: ask for a new one",
}


def _not_fresh(outcome: str, nonce: bytes | None) -> NotFresh:
    shown = f" (nonce {nonce.hex()[:16]}...)" if nonce is not None else ""
    return NotFresh(f"{_NONCE_REFUSALS[outcome]}{shown}", check=f"freshness.nonce_{outcome}")


def spki_digest(csr: x509.CertificateSigningRequest) -> str:
    der = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


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
        nonce_lifetime: timedelta | None = None,
    ) -> None:
        self.ca = ca
        self.policy = policy
        self.trust = trust
        self.store = store
        self.verifier = verifier
        self.clock = clock
        self.metrics = metrics or StewardMetrics()
        self.refusals = RefusalRecorder(store=store)
        freshness = getattr(policy, "freshness", None)
        lifetime = nonce_lifetime or getattr(freshness, "nonce_lifetime", None)
        self.nonce_lifetime: timedelta = lifetime or timedelta(seconds=120)
        self._challenge_key: bytes | None = None
        self._crl_lock = threading.Lock()
        self._crl_cache: (
            tuple[tuple[int, datetime | None], datetime, x509.CertificateRevocationList] | None
        ) = None
        self._last_purge: datetime | None = None

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
        error.message = bounded(error.message)
        self.refusals.record(error, platform=platform, evidence_sha256=evidence_sha256, now=now)
        error.evidence_sha256 = evidence_sha256
        return error

    def challenge(self) -> challenges.Challenge:
        """A fresh nonce for a Keep's claims: accepted once, before it expires (nothing stored)."""
        now = self.clock()
        self._purge(now)
        self.metrics.challenges.inc()
        return challenges.mint(self._key(), now + self.nonce_lifetime)

    def _key(self) -> bytes:
        if self._challenge_key is None:
            self._challenge_key = self.store.challenge_key()
        return self._challenge_key

    def _purge(self, now: datetime) -> None:
        """Forget used nonces that can only be refused as expired now, about once a minute."""
        last = self._last_purge
        if last is not None and timedelta(0) <= now - last < timedelta(minutes=1):
            return
        self._last_purge = now
        self.store.purge_used_nonces(before=now - timedelta(minutes=5))

    def _check_fresh(self, verdict: VerdictLike, now: datetime) -> UsedNonce | None:
        """The claims' challenge must be one of this store's, unexpired; its use is recorded
        with the certificate (``record_issued``), which refuses a second use."""
        if verdict.csr is None:
            return None
        workload, _ = csr_workload_claims(verdict.csr)
        nonce = getattr(workload, "nonce", None)
        if nonce is None:
            return None  # the verifier applied [freshness] to evidence without a challenge
        outcome, expires = challenges.check(self._key(), nonce, now)
        if outcome != "ok" or expires is None:
            raise _not_fresh(outcome, nonce)
        return UsedNonce(challenges.digest(nonce), now, expires)

    def _check_key_not_revoked(self, key_sha256: str) -> None:
        serial = self.store.revoked_serial_for_key(key_sha256)
        if serial is not None:
            raise KeyRevoked(
                f"the CSR's key belongs to revoked certificate serial {serial}: "
                "a revoked key is never certified again; make a new key",
                check="revoked.key",
            )

    def attest(self, csr_ders: Sequence[bytes]) -> Attestation:
        """Verify every CSR, then issue all or none, commit the audit rows, then return."""
        now = self.clock()
        verdicts: list[VerdictLike] = []
        issued: list[Issued] = []
        nonces: list[UsedNonce] = []
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
                if verdict.csr is not None:
                    self._check_key_not_revoked(spki_digest(verdict.csr))
                used = self._check_fresh(verdict, now)
                if used is not None:
                    nonces.append(used)
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
        committing = time.perf_counter()
        try:
            self.store.record_issued(records, nonces)  # before anything is returned
        except NonceAlreadyUsed:
            verdict = verdicts[0]
            raise self._refuse(
                _not_fresh("used", None),
                platform=verdict.platform,
                evidence_sha256=verdict.evidence_sha256,
                now=now,
            ) from None
        finally:
            self.metrics.audit_commit_seconds.observe(time.perf_counter() - committing)
        self._recheck_revocations(issued, verdicts, now)
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
            if EVIDENCE_NOT_FRESH in item.result.advisories:
                log.warning(
                    "EVIDENCE NOT FRESH for certificate serial=%s platform=%s: an Enarx CSR "
                    'carries no challenge ([freshness] enarx = "accept"; advisory in the '
                    "certificate)",
                    item.serial_hex,
                    item.result.platform,
                )
            if REVOCATION_NOT_CHECKED in item.result.advisories:
                revocation = next(
                    (c for c in verdict.checks if c.id in ("snp.revocation", "dcap.revocation")),
                    None,
                )
                log.warning(
                    "REVOCATION NOT CHECKED for certificate serial=%s platform=%s (policy crl = "
                    '"if-available"; advisory in the certificate): %s',
                    item.serial_hex,
                    item.result.platform,
                    revocation.reason if revocation is not None else "no current vendor CRL",
                )
            if TCB_NOT_APPRAISED in item.result.advisories:
                log.warning(
                    "TCB NOT APPRAISED for certificate serial=%s platform=%s (policy tcb_mode = "
                    '"if-available", no Intel TCB collateral; advisory in the certificate)',
                    item.serial_hex,
                    item.result.platform,
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

    def _recheck_revocations(
        self, issued: Sequence[Issued], verdicts: Sequence[VerdictLike], now: datetime
    ) -> None:
        """After the commit: a revocation of the same key that raced this issuance wins.

        The revoker commits, then revokes every certificate of the key; this side
        commits, then looks. One of the two always sees the other's row.
        """
        for item, verdict in zip(issued, verdicts, strict=True):
            serial = self.store.revoked_serial_for_key(item.subject_key_sha256)
            if serial is None:
                continue
            self.store.revoke_key(item.subject_key_sha256, reason="key-compromise", at=now)
            raise self._refuse(
                KeyRevoked(
                    f"the CSR's key was revoked (serial {serial}) while this request was "
                    "being answered; the new certificate was revoked too",
                    check="revoked.key",
                ),
                platform=verdict.platform,
                evidence_sha256=verdict.evidence_sha256,
                now=now,
            )

    def crl(self) -> x509.CertificateRevocationList:
        """The signed CRL, rebuilt only when the store's revocations changed (on any replica)
        or half its validity has passed; building one of 10^5 serials takes seconds."""
        now = self.clock()
        mark = self.store.revocation_mark()
        with self._crl_lock:
            cached = self._crl_cache
            if (
                cached is not None
                and cached[0] == mark
                and timedelta(0) <= now - cached[1] < CRL_VALIDITY / 2
            ):
                return cached[2]
            crl = build_crl(self.ca, self.store.revoked(), now=now)
            self._crl_cache = (mark, now, crl)
            return crl

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
