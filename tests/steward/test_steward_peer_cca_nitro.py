"""Relying party on CCA and Nitro peers: the platform is shown and can be demanded, and a
Nitro certificate's hypervisor-trusted advisory is refused unless the caller allows it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from steward_fakes import issue_snp_leaf

from donjon.attestation.peer import (
    AdvisoryNotAllowedError,
    PeerExpectations,
    PlatformNotAllowedError,
    verify_peer_certificate,
)
from donjon.keep.config_peer import platforms
from donjon.steward.ca import CertificateAuthority

NOW = datetime.now(UTC)
#: What the Steward writes for every Nitro result (written by hand, not imported).
NITRO_ADVISORIES = ("hypervisor-trusted", "revocation-not-checked")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(curve="p256", now=NOW)


def nitro_leaf(ca: CertificateAuthority) -> x509.Certificate:
    return issue_snp_leaf(
        ca,
        now=NOW,
        platform="nitro",
        product="AWS Nitro Enclaves",
        tcb="",
        tcb_status="NotAppraised",
        advisories=NITRO_ADVISORIES,
    )


def test_nitro_peer_refused_by_default(ca: CertificateAuthority) -> None:
    with pytest.raises(AdvisoryNotAllowedError, match="hypervisor-trusted"):
        verify_peer_certificate(nitro_leaf(ca), ca.certificate, now=NOW)


def test_nitro_peer_accepted_when_its_advisories_are_allowed(ca: CertificateAuthority) -> None:
    expect = PeerExpectations(
        platforms=frozenset({"nitro"}),
        allowed_advisories=frozenset(NITRO_ADVISORIES),
        tcb_statuses=frozenset({"NotAppraised"}),
    )
    ident = verify_peer_certificate(nitro_leaf(ca), ca.certificate, now=NOW, expect=expect)
    assert ident.result.platform == "nitro"
    # Allowing only the revocation advisory is not enough.
    partial = PeerExpectations(
        allowed_advisories=frozenset({"revocation-not-checked"}),
        tcb_statuses=frozenset({"NotAppraised"}),
    )
    with pytest.raises(AdvisoryNotAllowedError, match="hypervisor-trusted"):
        verify_peer_certificate(nitro_leaf(ca), ca.certificate, now=NOW, expect=partial)


def test_platform_cca_is_demanded(ca: CertificateAuthority) -> None:
    cca = issue_snp_leaf(ca, now=NOW, platform="cca", product="7f45", tcb_status="MeetsMinimum")
    ident = verify_peer_certificate(
        cca, ca.certificate, now=NOW, expect=PeerExpectations(platforms=frozenset({"cca"}))
    )
    assert ident.result.platform == "cca"
    with pytest.raises(PlatformNotAllowedError, match="peer platform nitro"):
        verify_peer_certificate(
            nitro_leaf(ca),
            ca.certificate,
            now=NOW,
            expect=PeerExpectations(
                platforms=frozenset({"cca"}),
                allowed_advisories=frozenset(NITRO_ADVISORIES),
                tcb_statuses=frozenset({"NotAppraised"}),
            ),
        )


def test_config_knows_cca_and_nitro() -> None:
    assert platforms(["cca", "nitro"]) == ["cca", "nitro"]
    with pytest.raises(ValueError, match="unknown platform"):
        platforms(["arm"])
