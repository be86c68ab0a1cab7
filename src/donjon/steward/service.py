"""The Steward's core: verify a CSR's evidence, issue, and audit. No HTTP here.

The order matters and is the product's promise: verify (fail closed), sign,
commit the audit record, and only then hand the certificate out.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
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
from donjon.steward.ca import CertificateAuthority
from donjon.steward.contract import PolicyLike, VerdictLike, Verifier
from donjon.steward.crl import REASONS, build_crl
from donjon.steward.errors import (
    AttestationRefused,
    EvidenceNotAuthentic,
    KeyRevoked,
    MalformedRequest,
    NotFresh,
    Overloaded,
    StewardError,
)
from donjon.steward.issue import Issued, csr_workload_claims, issue_certificate
from donjon.steward.metrics import StewardMetrics
from donjon.steward.refusals import RefusalRecorder, bounded
from donjon.steward.store import AuditStore, CertificateRecord

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
        {"id": c.id, "passed": bool(c.passed), "reason": bounded(c.reason)} for c in verdict.checks
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


#: Bytes of a challenge nonce (the claims accept 32..64).
NONCE_BYTES = 32
#: Outstanding challenges one store may hold; more are refused (503) until some expire.
MAX_OPEN_CHALLENGES = 100_000
_NONCE_REFUSALS = {
    "unknown": "the challenge nonce was not given by this Steward (or its store)",
    "used": "the challenge nonce was already used: evidence is accepted once per challenge",
    "expired": "the challenge nonce expired before the evidence arrived: ask for a new one",
}


@dataclass(frozen=True)
class Challenge:
    nonce: bytes
    expires_at: datetime


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
        serialize_verifier: bool = True,
        nonce_lifetime: timedelta | None = None,
        max_open_challenges: int = MAX_OPEN_CHALLENGES,
    ) -> None:
        self.ca = ca
        self.policy = policy
        self.trust = trust
        self.store = store
        self.verifier = verifier
        self.clock = clock
        self.metrics = metrics or StewardMetrics()
        self.refusals = RefusalRecorder(store)
        freshness = getattr(policy, "freshness", None)
        lifetime = nonce_lifetime or getattr(freshness, "nonce_lifetime", None)
        self.nonce_lifetime: timedelta = lifetime or timedelta(seconds=120)
        self.max_open_challenges = max_open_challenges
        self._last_purge: datetime | None = None
        # The engine's trust store caches chains and is not thread-safe; the HTTP layer
        # runs attestations in worker threads, so they take turns inside the verifier.
        self._verify_lock: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if serialize_verifier else contextlib.nullcontext()
        )

    def _verify(self, csr_der: bytes, now: datetime) -> VerdictLike:
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            with self._verify_lock:
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

    def challenge(self) -> Challenge:
        """A fresh nonce for a Keep's claims, stored so that it is accepted once, in time."""
        now = self.clock()
        self._purge(now)
        nonce = secrets.token_bytes(NONCE_BYTES)
        expires = now + self.nonce_lifetime
        self.store.add_challenge(
            hashlib.sha256(nonce).hexdigest(), issued_at=now, expires_at=expires
        )
        self.metrics.challenges.inc()
        return Challenge(nonce, expires)

    def _purge(self, now: datetime) -> None:
        """Drop expired challenges about once a minute, and refuse past the cap."""
        last = self._last_purge
        if last is not None and timedelta(0) <= now - last < timedelta(minutes=1):
            return
        self._last_purge = now
        self.store.purge_challenges(before=now - timedelta(minutes=5))
        if self.store.open_challenges(now=now) >= self.max_open_challenges:
            self._last_purge = None  # look again next time
            raise Overloaded(
                f"{self.max_open_challenges} challenges are outstanding; retry when some expire"
            )

    def _check_fresh(self, verdict: VerdictLike, now: datetime) -> None:
        """Accept the claims' challenge nonce once, before it expires (the store decides)."""
        if verdict.csr is None:
            return
        workload, _ = csr_workload_claims(verdict.csr)
        nonce = getattr(workload, "nonce", None)
        if nonce is None:
            return  # the verifier applied [freshness] to evidence without a challenge
        outcome = self.store.consume_challenge(hashlib.sha256(nonce).hexdigest(), now=now)
        if outcome != "ok":
            raise NotFresh(
                f"{_NONCE_REFUSALS[outcome]} (nonce {nonce.hex()[:16]}...)",
                check=f"freshness.nonce_{outcome}",
            )

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
                self._check_fresh(verdict, now)
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
