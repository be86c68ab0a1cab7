"""Relying party, fail closed on what the Steward wrote: advisories, tcbStatus, and a
visible record when revocation was not checked.

Certificates here are issued by the Steward's own ``issue_certificate`` for a verdict
whose AttestationResult is written by hand, so each test states the claim it refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from steward_fakes import issue_snp_leaf

from donjon.attestation.claims import REVOCATION_NOT_CHECKED
from donjon.attestation.peer import (
    AdvisoryNotAllowedError,
    PeerExpectations,
    TcbStatusNotAllowedError,
    TcbTooLowError,
    verify_peer_certificate,
)
from donjon.steward.ca import CertificateAuthority
from donjon.steward.crl import build_crl

NOW = datetime.now(UTC)
#: A hand-written advisory name in Intel's style, never in any default allow-list.
INTEL_ADVISORY = "INTEL-SA-00615"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(curve="p256", now=NOW)


def issued(ca: CertificateAuthority, **changes: object) -> x509.Certificate:
    """A leaf as the Steward issues it for an accepted SNP verdict with these claims."""
    changes.setdefault("tcb_status", "MeetsMinimum")
    if changes.get("platform", "snp") in ("sim", "nil", "kvm"):
        changes["development"] = True
    return issue_snp_leaf(ca, now=NOW, **changes)


def check(ca: CertificateAuthority, leaf: x509.Certificate, **expect: object) -> dict[str, str]:
    """Verify with these expectations; the checks as {id: reason}."""
    ident = verify_peer_certificate(
        leaf,
        ca.certificate,
        now=NOW,
        expect=PeerExpectations(**expect),  # type: ignore[arg-type]
    )
    return {c.id: c.reason for c in ident.checks}


# --- advisories ------------------------------------------------------------------------------


def test_a_tee_peer_with_revocation_not_checked_is_refused_by_default(
    ca: CertificateAuthority,
) -> None:
    # What the Steward writes under [snp] crl = "if-available" when no current CRL was found.
    leaf = issued(ca, advisories=(REVOCATION_NOT_CHECKED,))
    with pytest.raises(AdvisoryNotAllowedError) as info:
        verify_peer_certificate(leaf, ca.certificate, now=NOW)
    assert info.value.code == "peer.advisory"
    assert str(info.value) == (
        "peer certificate carries advisory revocation-not-checked, not accepted (allowed: none)"
    )


def test_an_advisory_is_accepted_when_explicitly_allowed(ca: CertificateAuthority) -> None:
    leaf = issued(ca, advisories=(REVOCATION_NOT_CHECKED,))
    checks = check(ca, leaf, allowed_advisories=frozenset({REVOCATION_NOT_CHECKED}))
    assert checks["advisories"] == "revocation-not-checked accepted (allowed by the caller)"


def test_allowing_one_advisory_does_not_allow_another(ca: CertificateAuthority) -> None:
    leaf = issued(ca, advisories=(REVOCATION_NOT_CHECKED, INTEL_ADVISORY))
    with pytest.raises(AdvisoryNotAllowedError, match=f"advisory {INTEL_ADVISORY}, not accepted"):
        check(ca, leaf, allowed_advisories=frozenset({REVOCATION_NOT_CHECKED}))


def test_a_peer_without_advisories_says_none(ca: CertificateAuthority) -> None:
    assert check(ca, issued(ca))["advisories"] == "none"


def test_an_allowed_development_peer_may_carry_revocation_not_checked(
    ca: CertificateAuthority,
) -> None:
    # The Steward writes it on every sim certificate: a simulated vendor has no CRL.
    leaf = issued(ca, platform="sim", advisories=(REVOCATION_NOT_CHECKED,))
    checks = check(ca, leaf, allow_development=True, platforms=frozenset({"sim"}))
    assert checks["advisories"] == "revocation-not-checked accepted (development peer)"


def test_a_development_peer_gets_no_other_advisory_by_default(ca: CertificateAuthority) -> None:
    leaf = issued(ca, platform="sim", advisories=(REVOCATION_NOT_CHECKED, INTEL_ADVISORY))
    with pytest.raises(AdvisoryNotAllowedError, match=INTEL_ADVISORY):
        check(ca, leaf, allow_development=True)


def test_an_explicit_empty_allow_list_refuses_even_a_development_peers_advisory(
    ca: CertificateAuthority,
) -> None:
    leaf = issued(ca, platform="sim", advisories=(REVOCATION_NOT_CHECKED,))
    with pytest.raises(AdvisoryNotAllowedError):
        check(ca, leaf, allow_development=True, allowed_advisories=frozenset())


# --- tcbStatus -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["OutOfDate", "SWHardeningNeeded", "Revoked", "Unknown", ""])
def test_a_tee_peer_whose_tcb_is_not_current_is_refused(
    ca: CertificateAuthority, status: str
) -> None:
    with pytest.raises(TcbStatusNotAllowedError) as info:
        verify_peer_certificate(issued(ca, tcb_status=status), ca.certificate, now=NOW)
    assert info.value.code == "peer.tcb_status"
    assert "(accepted: MeetsMinimum, UpToDate)" in str(info.value)


@pytest.mark.parametrize("status", ["UpToDate", "MeetsMinimum"])
def test_current_tcb_statuses_are_accepted_by_default(
    ca: CertificateAuthority, status: str
) -> None:
    assert check(ca, issued(ca, tcb_status=status))["tcb_status"] == status


def test_not_appraised_needs_a_minimum_tcb_here(ca: CertificateAuthority) -> None:
    leaf = issued(ca, tcb_status="NotAppraised")
    with pytest.raises(
        TcbStatusNotAllowedError, match="sets no minimum TCB; set one there, or give one here"
    ):
        check(ca, leaf)
    checks = check(ca, leaf, min_tcb={"snp": 8, "ucode": 115})
    assert checks["tcb_status"] == "NotAppraised by the Steward; appraised here"
    assert checks["tcb"] == "TCB bl=3 tee=0 snp=8 ucode=115 meets the minimum"
    with pytest.raises(TcbTooLowError, match="snp=8 < 9"):
        check(ca, leaf, min_tcb={"snp": 9})


def test_an_explicit_tcb_status_list_replaces_the_default(ca: CertificateAuthority) -> None:
    assert (
        check(ca, issued(ca, tcb_status="OutOfDate"), tcb_statuses=frozenset({"OutOfDate"}))[
            "tcb_status"
        ]
        == "OutOfDate"
    )
    with pytest.raises(TcbStatusNotAllowedError, match="accepted: OutOfDate"):
        check(ca, issued(ca, tcb_status="UpToDate"), tcb_statuses=frozenset({"OutOfDate"}))


def test_a_development_peers_tcb_status_is_not_appraised(ca: CertificateAuthority) -> None:
    leaf = issued(ca, platform="nil", tcb_status="NoTEE", debug=True, tcb="")
    checks = check(ca, leaf, allow_development=True, allow_debug=True)
    assert checks["tcb_status"] == "NoTEE (development peer: no TCB to appraise)"


# --- revocation: never silently skipped --------------------------------------------------------


def test_no_crl_is_recorded_as_a_skipped_revocation_check(ca: CertificateAuthority) -> None:
    ident = verify_peer_certificate(issued(ca), ca.certificate, now=NOW)
    revocation = [c for c in ident.checks if c.id == "revocation"]
    assert len(revocation) == 1
    assert revocation[0].skipped
    assert revocation[0].reason == "not checked (no CRL given)"
    assert ident.revocation_checked is False


def test_a_crl_given_is_recorded_as_checked(ca: CertificateAuthority) -> None:
    crl = build_crl(ca, [], now=NOW)
    ident = verify_peer_certificate(issued(ca), ca.certificate, now=NOW, crl=crl)
    revocation = next(c for c in ident.checks if c.id == "revocation")
    assert not revocation.skipped
    assert revocation.reason == "not in the Steward's current CRL"
    assert ident.revocation_checked is True
