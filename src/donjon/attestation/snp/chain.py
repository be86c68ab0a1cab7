"""ARK -> ASK (or ASVK) -> VCEK (or VLEK): build and check the AMD certificate chain.

The ARK must carry a pinned fingerprint (or, for the simulator, the one the
policy names). Several intermediates may be candidates: Genoa has two ASKs,
the first one revoked, so each candidate is tried and the ARK's CRL decides.
A CRL that claims to come from the ARK but is not signed by it is an attack,
never a detail, and fails verification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from donjon.attestation.errors import (
    AttestationError,
    CertificateRevokedError,
    ChainError,
    CrlMissingError,
    CrlSignatureError,
    CrlStaleError,
    FingerprintMismatchError,
)
from donjon.attestation.snp.profile import (
    check_critical_extensions,
    check_issuer_profile,
    crl_scope_problem,
)
from donjon.attestation.x509util import (
    check_validity,
    serial_of,
    verify_crl_signature,
    verify_issued_by,
)

CrlMode = Literal["require", "if-available"]


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def crl_fingerprint(crl: x509.CertificateRevocationList) -> str:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(crl.public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class ChainResult:
    ark: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    crl_checked: bool
    crl_note: str
    valid_from: datetime  # the conclusions hold from here...
    valid_until: datetime  # ...to here (certificate and CRL windows)
    not_after_limit: datetime  # latest validity the collateral allows
    summary: tuple[str, ...] = ()  # ARK, intermediate and leaf, for people

    def describe(self) -> list[str]:
        return list(self.summary)


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def check_ark(ark: x509.Certificate, pinned_sha256: str, what: str) -> None:
    """Refuse a root whose fingerprint is not the pinned one, then check its self-signature."""
    actual = fingerprint(ark)
    if actual != pinned_sha256:
        raise FingerprintMismatchError(
            f"{what} {_cn(ark)} has SHA-256 fingerprint {actual[:16]}..., "
            f"expected the pinned {pinned_sha256[:16]}..."
        )
    if ark.issuer != ark.subject:
        raise ChainError(f"{what} {_cn(ark)} is not self-signed")
    verify_issued_by(ark, ark, f"{what} {_cn(ark)}")
    check_issuer_profile(ark, crl_sign=True)


def verify_chain(
    leaf: x509.Certificate,
    *,
    ark: x509.Certificate,
    pinned_sha256: str,
    intermediates: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    now: datetime,
    crl_mode: CrlMode,
) -> ChainResult:
    check_ark(ark, pinned_sha256, "root")
    revoked, current_crl, stale_crl = _revocations(ark, crls, now)
    candidates = [c for c in intermediates if c.issuer == ark.subject and c.subject == leaf.issuer]
    if not candidates:
        raise ChainError(
            f"no intermediate {leaf.issuer.rfc4514_string()} issued by {_cn(ark)} is available"
        )
    chosen: x509.Certificate | None = None
    failures: list[AttestationError] = []
    for candidate in candidates:
        serial = serial_of(candidate)
        if serial in revoked:
            failures.append(
                CertificateRevokedError(
                    f"{_cn(candidate)} serial 0x{serial:x} is revoked by {_cn(ark)}'s CRL"
                )
            )
            continue
        try:
            verify_issued_by(candidate, ark, _cn(candidate))
            check_issuer_profile(candidate, crl_sign=False)
            verify_issued_by(leaf, candidate, _cn(leaf))
            check_critical_extensions(leaf)
        except ChainError as exc:
            failures.append(exc)
            continue
        chosen = candidate
        break
    if chosen is None:
        for failure in failures:
            if isinstance(failure, CertificateRevokedError):
                raise failure
        raise failures[0]
    for cert in (ark, chosen, leaf):
        check_validity(cert, now, _cn(cert))
    note = _freshness(ark, current_crl, stale_crl, now, crl_mode)
    certs = (ark, chosen, leaf)
    valid_from = max(c.not_valid_before_utc for c in certs)
    valid_until = min(c.not_valid_after_utc for c in certs)
    not_after_limit = valid_until
    if current_crl is not None and current_crl.next_update_utc is not None:
        not_after_limit = min(not_after_limit, current_crl.next_update_utc)
    # The same answer holds only while no CRL of this root starts or stops being current.
    before, after = _crl_boundaries(ark, crls, now)
    valid_from = max([valid_from, *before])
    valid_until = min([valid_until, *after])
    summary = (
        _cn(ark) + f" (sha256 {fingerprint(ark)[:16]}...)",
        _cn(chosen) + f" serial 0x{serial_of(chosen):x}",
        _cn(leaf),
    )
    return ChainResult(
        summary=summary,
        ark=ark,
        intermediate=chosen,
        leaf=leaf,
        crl_checked=current_crl is not None,
        crl_note=note,
        valid_from=valid_from,
        valid_until=valid_until,
        not_after_limit=not_after_limit,
    )


def _crl_boundaries(
    ark: x509.Certificate, crls: Sequence[x509.CertificateRevocationList], now: datetime
) -> tuple[list[datetime], list[datetime]]:
    """Instants around ``now`` at which some CRL of ``ark`` becomes, or stops being, current."""
    before: list[datetime] = []
    after: list[datetime] = []
    for crl in crls:
        if crl.issuer != ark.subject:
            continue
        (before if crl.last_update_utc <= now else after).append(crl.last_update_utc)
        if crl.next_update_utc is not None:
            if crl.next_update_utc < now:
                before.append(crl.next_update_utc + timedelta(microseconds=1))
            else:
                after.append(crl.next_update_utc)
    return before, after


def is_current(crl: x509.CertificateRevocationList, now: datetime) -> bool:
    """A complete CRL inside thisUpdate..nextUpdate. A CRL without nextUpdate (RFC 5280
    requires one) cannot prove its own freshness, and a delta or partitioned CRL is not
    the whole list, so neither is ever current (their revocations still apply)."""
    next_update = crl.next_update_utc
    if next_update is None or crl_scope_problem(crl) is not None:
        return False
    return crl.last_update_utc <= now <= next_update


def why_not_current(crl: x509.CertificateRevocationList, now: datetime) -> str:
    """Why a CRL is not current at ``now``, naming its dates."""
    this_update = crl.last_update_utc.isoformat()
    problem = crl_scope_problem(crl)
    if problem is not None:
        return f"its newest CRL (thisUpdate {this_update}) {problem}"
    if crl.next_update_utc is None:
        return f"its CRL of {this_update} has no nextUpdate, so its freshness cannot be told"
    if now < crl.last_update_utc:
        return f"its newest CRL is not valid before its thisUpdate {this_update}"
    next_update = crl.next_update_utc.isoformat()
    return f"its newest CRL (thisUpdate {this_update}) expired at nextUpdate {next_update}"


_REQUIRED = ' (crl = "require": fetch a current CRL, or set crl = "if-available" knowingly)'


def _revocations(
    ark: x509.Certificate, crls: Sequence[x509.CertificateRevocationList], now: datetime
) -> tuple[set[int], x509.CertificateRevocationList | None, x509.CertificateRevocationList | None]:
    """Serials revoked by any genuine CRL of this ARK, its newest current CRL and its newest
    other one. Revocation is permanent, so a stale but genuine CRL still revokes."""
    revoked: set[int] = set()
    current: x509.CertificateRevocationList | None = None
    stale: x509.CertificateRevocationList | None = None
    for crl in crls:
        if crl.issuer != ark.subject:
            continue
        if not verify_crl_signature(crl, ark):
            raise CrlSignatureError(f"a CRL issued in the name of {_cn(ark)} has a bad signature")
        revoked.update(entry.serial_number for entry in crl)
        if is_current(crl, now):
            if current is None or crl.last_update_utc > current.last_update_utc:
                current = crl
        elif stale is None or crl.last_update_utc > stale.last_update_utc:
            stale = crl
    return revoked, current, stale


def _freshness(
    ark: x509.Certificate,
    current: x509.CertificateRevocationList | None,
    stale: x509.CertificateRevocationList | None,
    now: datetime,
    crl_mode: CrlMode,
) -> str:
    """Without a current CRL, ``require`` refuses (stale and missing are distinct errors)
    and ``if-available`` says plainly that revocation was not checked."""
    if current is not None:
        return f"{_cn(ark)} CRL of {current.last_update_utc.date()} checked"
    if stale is not None:
        why = why_not_current(stale, now)
        if crl_mode == "require":
            raise CrlStaleError(
                f"no current CRL of {_cn(ark)} at {now.isoformat()}: {why}{_REQUIRED}"
            )
        return (
            f'NOT CHECKED (crl = "if-available"): no current CRL of {_cn(ark)}: '
            f"{why}; only its permanent revocations were applied"
        )
    if crl_mode == "require":
        raise CrlMissingError(
            f"no CRL of {_cn(ark)} is available (none in the evidence, the trust directory "
            f"or the collateral cache){_REQUIRED}"
        )
    return f'NOT CHECKED (crl = "if-available"): no CRL of {_cn(ark)} is available'
