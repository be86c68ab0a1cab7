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
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from donjon.attestation.errors import (
    AttestationError,
    CertificateRevokedError,
    ChainError,
    CollateralMissingError,
    CrlExpiredError,
    CrlSignatureError,
    FingerprintMismatchError,
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
    revoked, current_crl, note = _revocations(ark, crls, now, crl_mode)
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
            verify_issued_by(leaf, candidate, _cn(leaf))
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
    certs = (ark, chosen, leaf)
    valid_from = max(c.not_valid_before_utc for c in certs)
    valid_until = min(c.not_valid_after_utc for c in certs)
    not_after_limit = valid_until
    if current_crl is not None:
        valid_from = max(valid_from, current_crl.last_update_utc)
        if current_crl.next_update_utc is not None:
            valid_until = min(valid_until, current_crl.next_update_utc)
            not_after_limit = min(not_after_limit, current_crl.next_update_utc)
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


def _revocations(
    ark: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    now: datetime,
    crl_mode: CrlMode,
) -> tuple[set[int], x509.CertificateRevocationList | None, str]:
    """Serials revoked by any genuine CRL of this ARK, and the current CRL if there is one.

    Revocation is permanent, so a stale but genuine CRL still revokes.
    """
    revoked: set[int] = set()
    current: x509.CertificateRevocationList | None = None
    stale: x509.CertificateRevocationList | None = None
    for crl in crls:
        if crl.issuer != ark.subject:
            continue
        if not verify_crl_signature(crl, ark):
            raise CrlSignatureError(f"a CRL issued in the name of {_cn(ark)} has a bad signature")
        revoked.update(entry.serial_number for entry in crl)
        next_update = crl.next_update_utc
        if crl.last_update_utc <= now and (next_update is None or now <= next_update):
            if current is None or crl.last_update_utc > current.last_update_utc:
                current = crl
        else:
            stale = crl
    if current is not None:
        note = f"{_cn(ark)} CRL of {current.last_update_utc.date()} checked"
    elif crl_mode == "require":
        if stale is not None:
            raise CrlExpiredError(
                f"{_cn(ark)} CRL is outside its validity window at {now.isoformat()} "
                f"(next update {stale.next_update_utc})"
            )
        raise CollateralMissingError(
            f"no CRL of {_cn(ark)} is available and the policy requires one"
        )
    elif stale is not None:
        note = "revocation list is stale: only its permanent revocations were applied"
    else:
        note = "no CRL available: revocation not checked"
    return revoked, current, note
