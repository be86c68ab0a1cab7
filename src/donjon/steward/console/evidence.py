"""Judge a file someone dropped on the console, as the Steward would, storing nothing.

Evidence (a report, quote, token or Keep CSR) goes through the same
recognition and verifiers as ``donjon attest verify``, under the Steward's
own policy and trust store; a CSR is also checked against what issuance
checks beyond the verifier (a revoked key, the challenge nonce), without
consuming anything. A Keep certificate is checked as a relying party would,
against this Steward's CA and its audit store.

Nothing uploaded is written anywhere: not to the store, not to disk, not to
the log (which gets its size, SHA-256 and verdict only).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from donjon.attestation import oids
from donjon.attestation.certprofile import parse_certificate
from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.attestation.errors import AttestationError
from donjon.attestation.peer import PeerError, PeerRevokedError, read_attestation
from donjon.attestation.peer_x509 import check_chain, check_leaf_profile, touch_peer
from donjon.attestation.recognise import recognise, verify_recognised
from donjon.attestation.verdict import Verdict
from donjon.attestation.x509util import X509_LOAD_ERRORS
from donjon.steward import challenges
from donjon.steward.errors import StewardError
from donjon.steward.issue import csr_workload_claims
from donjon.steward.refusals import bounded
from donjon.steward.service import Steward, spki_digest

log = logging.getLogger("donjon.steward")

_NOT_A_KEEP_CERTIFICATE: tuple[type[Exception], ...] = (x509.ExtensionNotFound, *X509_LOAD_ERRORS)
#: Decoded fields shown at most (a report has a few dozen).
MAX_DETAILS = 80


@dataclass(frozen=True)
class CheckView:
    id: str
    state: str  # "pass" | "fail" | "skip"
    reason: str


@dataclass
class UploadVerdict:
    kind: str  # "evidence" | "certificate"
    form: str
    size: int
    sha256: str
    platform: str
    evaluated_at: datetime
    accepted: bool = False
    failed: str | None = None  # id of the first failed check
    error: str | None = None
    checks: list[CheckView] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)
    serial: str | None = None  # a certificate of this Steward: its audit record

    def add(self, check_id: str, state: str, reason: str) -> None:
        self.checks.append(CheckView(check_id, state, bounded(reason, 400)))
        if state == "fail" and self.failed is None:
            self.failed = check_id
            self.error = bounded(reason, 400)


def _state(passed: bool, reason: str) -> str:
    if not passed:
        return "fail"
    return "skip" if reason.lower().startswith("not checked") else "pass"


def flatten(
    value: Any, prefix: str = "", out: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """Decoded evidence as (dotted key, bounded text) rows, at most :data:`MAX_DETAILS`."""
    rows = [] if out is None else out
    if len(rows) >= MAX_DETAILS:
        return rows
    if isinstance(value, Mapping):
        for key, item in value.items():
            flatten(item, f"{prefix}.{key}" if prefix else str(key), rows)
    elif isinstance(value, list | tuple) and value and isinstance(value[0], Mapping):
        for index, item in enumerate(value):
            flatten(item, f"{prefix}[{index}]", rows)
    else:
        text = value.hex() if isinstance(value, bytes) else str(value)
        rows.append((bounded(prefix, 80), bounded(text, 200)))
    return rows[:MAX_DETAILS]


def _claims_facts(
    result: AttestationResult | None, workload: WorkloadClaims | None
) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = []
    if result is not None:
        facts += [
            ("Product", result.product or "—"),
            ("Measurement", result.measurement.hex() or "—"),
            ("TCB", result.tcb or "—"),
            ("TCB status", result.tcb_status),
            ("Advisories", ", ".join(result.advisories) or "none"),
            ("Debug", "yes" if result.debug else "no"),
            ("Development", "yes" if result.development else "no"),
            ("Policy", result.policy_id),
        ]
    if workload is not None:
        facts += [
            ("Workload (main.wasm SHA-256)", workload.wasm_sha256.hex()),
            ("config SHA-256", workload.config_sha256.hex()),
            ("Package name", workload.package_name or "—"),
        ]
        package = getattr(workload, "package_sha256", None)
        if package is not None:
            facts.append(("Package SHA-256", package.hex()))
    return [(k, bounded(v, 200)) for k, v in facts]


def _keep_certificate(data: bytes) -> x509.Certificate | None:
    """A certificate carrying a Steward's attestation result, or None (then: evidence)."""
    looks_pem = b"-----BEGIN CERTIFICATE-----" in data
    if not looks_pem and data[:1] != b"\x30":
        return None
    try:
        cert = parse_certificate(data)
        cert.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT)
    except _NOT_A_KEEP_CERTIFICATE:
        return None
    return cert


def judge(data: bytes, steward: Steward, now: datetime) -> UploadVerdict:
    """The verdict on ``data``; :class:`UnrecognisedEvidence` when it is no known form."""
    digest = hashlib.sha256(data).hexdigest()
    cert = _keep_certificate(data)
    if cert is not None:
        verdict = _judge_certificate(cert, data, digest, steward, now)
    else:
        verdict = _judge_evidence(data, digest, steward, now)
    log.info(
        "console: judged an upload of %d bytes (sha256 %s, %s): %s",
        len(data),
        digest,
        verdict.form,
        "accepted" if verdict.accepted else f"refused at {verdict.failed}",
    )
    return verdict


def _judge_evidence(data: bytes, digest: str, steward: Steward, now: datetime) -> UploadVerdict:
    evidence = recognise(data)
    policy: Any = steward.policy
    verdict = verify_recognised(evidence, policy=policy, trust=steward.trust, now=now)
    out = UploadVerdict(
        kind="evidence",
        form=evidence.form,
        size=len(data),
        sha256=digest,
        platform=verdict.platform,
        evaluated_at=now,
    )
    for check in verdict.checks:
        out.add(check.id, _state(check.passed, check.reason), check.reason)
    if verdict.accepted and verdict.csr is not None:
        _issuance_checks(out, verdict, steward, now)
    out.accepted = verdict.accepted and out.failed is None
    out.facts = _verdict_facts(verdict)
    try:
        out.details = flatten(verdict.details or {})
    except (AttestationError, ValueError) as exc:  # describing is best effort
        out.details = [("details", bounded(f"cannot be shown: {exc}", 200))]
    return out


def _verdict_facts(verdict: Verdict) -> list[tuple[str, str]]:
    facts: list[tuple[str, str]] = [("Evidence SHA-256", verdict.evidence_sha256 or "—")]
    appraisal = verdict.appraisal
    if verdict.result is None and appraisal is not None:
        facts += [
            ("Product", appraisal.product or "—"),
            ("Measurement", appraisal.measurement.hex() or "—"),
            ("TCB", appraisal.tcb or "—"),
            ("TCB status", appraisal.tcb_status or "—"),
            ("Debug", "yes" if appraisal.debug else "no"),
        ]
    if verdict.crl_mode is not None:
        checked = verdict.revocation_checked
        state = "" if checked is None else (": checked" if checked else ": NOT CHECKED")
        facts.append(("Revocation", f'crl = "{verdict.crl_mode}"{state}'))
    workload = verdict.result.workload if verdict.result is not None else None
    facts += _claims_facts(verdict.result, workload)
    return [(k, bounded(v, 200)) for k, v in facts]


def _issuance_checks(out: UploadVerdict, verdict: Verdict, steward: Steward, now: datetime) -> None:
    """What issuance checks after the verifier, looked up without changing anything."""
    csr = verdict.csr
    assert csr is not None
    revoked = steward.store.revoked_serial_for_key(spki_digest(csr))
    if revoked is None:
        out.add("revoked.key", "pass", "the CSR's key belongs to no revoked certificate")
    else:
        out.add("revoked.key", "fail", f"the CSR's key belongs to revoked certificate {revoked}")
    workload, _ = csr_workload_claims(csr)
    nonce = getattr(workload, "nonce", None)
    if nonce is None:
        out.add("freshness.challenge", "skip", "not checked: the CSR answers no challenge")
        return
    outcome, _ = challenges.check(steward.store.challenge_key(), nonce, now)
    said: Mapping[str, str] = {
        "ok": "a challenge of this Steward, not expired (its use is not checked or recorded)",
        "unknown": "the challenge nonce was not given by this Steward (or its store)",
        "expired": "the challenge nonce has expired",
    }
    out.add("freshness.challenge", "pass" if outcome == "ok" else "fail", said[outcome])


def _judge_certificate(
    cert: x509.Certificate, data: bytes, digest: str, steward: Steward, now: datetime
) -> UploadVerdict:
    out = UploadVerdict(
        kind="certificate",
        form="Keep certificate (PEM)" if b"-----BEGIN" in data else "Keep certificate (DER)",
        size=len(data),
        sha256=digest,
        platform="unknown",
        evaluated_at=now,
    )
    serial = format(cert.serial_number, "x")
    ca = steward.ca.certificate
    steps: list[tuple[str, Callable[[], str]]] = [
        ("peer.decode", lambda: _touch(cert)),
        ("peer.chain", lambda: _chain(cert, ca, now)),
        (
            "peer.profile",
            lambda: "end-entity certificate for TLS (" + check_leaf_profile(cert) + ")",
        ),
        ("peer.revocation", lambda: _revocation(steward, serial)),
    ]
    for check_id, step in steps:
        try:
            out.add(check_id, "pass", step())
        except (PeerError, StewardError) as exc:
            out.add(check_id, "fail", getattr(exc, "message", str(exc)))
            break
    if out.failed is None:
        out.serial = serial
    try:
        result, workload = read_attestation(cert)
    except PeerError as exc:
        out.add("peer.attestation", "fail", exc.message)
    else:
        out.platform = result.platform
        current = getattr(steward.policy, "digest", "")
        which = "the policy in force" if result.policy_id == current else "an earlier policy"
        out.add("peer.attestation", "pass", f"platform {result.platform}, judged by {which}")
        out.facts = _claims_facts(result, workload)
    out.facts.insert(0, ("Serial", serial))
    out.accepted = out.failed is None
    return out


def _touch(cert: x509.Certificate) -> str:
    touch_peer(cert)
    return "every field decodes"


def _chain(cert: x509.Certificate, ca: x509.Certificate, now: datetime) -> str:
    check_chain(cert, ca, now)
    return "signed by this Steward's CA, in its validity period"


def _revocation(steward: Steward, serial: str) -> str:
    record = steward.store.get(serial)  # NotFound: not issued (recorded) by this Steward
    if record.revoked_at is not None:
        raise PeerRevokedError(
            f"revoked at {record.revoked_at.isoformat()} ({record.revocation_reason}); "
            "the CRL lists it"
        )
    return "in the audit store, not revoked"
