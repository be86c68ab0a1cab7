"""SNP verification of the real vectors, and each way a report must be refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from attest_fakes import SNP_IDS, VERIFY_AT, FakeAmd, SnpVector, at, make_amd
from attest_policies import (
    MILAN_CRL_NEXT_UPDATE,
    MILAN_VLEK,
    policy,
    stale_ok,
    vector_policy,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import (
    CertificateExpiredError,
    DebugNotAllowedError,
    FingerprintMismatchError,
    Product,
    ProductMismatchError,
    SignatureError,
    TrustStore,
    WrongEndorsementKeyError,
    verify_report,
)
from donjon.attestation.snp import layout
from donjon.attestation.snp.verify import SimRoot, SnpEvidence, verify_snp
from donjon.attestation.verdict import Checklist, Stop


@pytest.mark.parametrize("vid", SNP_IDS)
def test_every_vector_verifies_at_its_time(
    vid: str,
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    vector = snp_vector(vid)
    verdict = verify_report(
        vector.report,
        policy=vector_policy(vid),
        trust=amd_trust,
        now=at(VERIFY_AT[vid]),
        vcek=vector.vcek,
    )
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert verdict.result is not None
    assert verdict.result.product == "Milan"
    assert verdict.result.measurement.hex() == vector.data["computed"]["report"]["measurement"]
    ext = vector.data["computed"]["cert_extensions"]
    tcb = " ".join(f"{k}={ext[k]}" for k in ("bl", "tee", "snp", "ucode"))
    assert verdict.result.tcb == tcb
    ids = [c.id for c in verdict.checks]
    for required in ("snp.signature", "snp.chain", "snp.vcek_match", "snp.debug"):
        assert required in ids
    assert verdict.not_after_limit is not None
    # The Milan CRL (nextUpdate 2023-05-09, SOURCES.md) bounds validity when it is current.
    limit = (
        "2023-05-09" if vid == "snp-milan-v2-steward-csr" else vector.data["cert_validity"][1][:10]
    )
    assert verdict.not_after_limit.isoformat().startswith(limit)
    revocation = next(c for c in verdict.checks if c.id == "snp.revocation")
    if at(VERIFY_AT[vid]) > MILAN_CRL_NEXT_UPDATE:
        assert verdict.crl_mode == "if-available" and verdict.revocation_checked is False
        assert revocation.reason.startswith("NOT CHECKED")
        assert "2023-05-09T23:00:00+00:00" in revocation.reason
        assert verdict.result.advisories == ("revocation-not-checked",)
    else:
        assert verdict.crl_mode == "require" and verdict.revocation_checked is True
        assert revocation.reason == "ARK-Milan CRL of 2022-05-09 checked"
        assert verdict.result.advisories == ()


def test_debug_report_rejected_by_default_accepted_with_allow_debug(
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    vector = snp_vector("snp-milan-v2-go-sev-guest")
    assert vector.data["computed"]["report"]["policy_decoded"]["debug_allowed"] is True
    args: dict[str, Any] = {
        "trust": amd_trust,
        "now": at("2025-01-01T00:00:00Z"),
        "vcek": vector.vcek,
    }
    refused = verify_report(vector.report, policy=stale_ok(), **args)
    assert not refused.accepted
    assert refused.reason == "snp.debug"
    assert isinstance(refused.error, DebugNotAllowedError)
    allowed = verify_report(vector.report, policy=stale_ok("allow_debug = true"), **args)
    assert allowed.accepted
    assert allowed.result is not None and allowed.result.debug is True


def test_vlek_report_goes_through_the_asvk(
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    vector = snp_vector(MILAN_VLEK)
    verdict = verify_report(
        vector.report,
        policy=vector_policy(MILAN_VLEK),
        trust=amd_trust,
        now=at("2025-06-01T00:00:00Z"),
        vcek=vector.vcek,
    )
    assert verdict.accepted
    chain = next(c for c in verdict.checks if c.id == "snp.chain")
    assert "SEV-VLEK-Milan" in chain.reason  # the ASVK, not the ASK
    assert verdict.details is not None
    assert verdict.details["endorsement_key"]["csp_id"] == "CN=cc-us-east-2.amazonaws.com"
    # Outside the VLEK's one-year life (2024-12-10..2025-12-10) it is refused.
    late = verify_report(
        vector.report,
        policy=vector_policy(MILAN_VLEK),
        trust=amd_trust,
        now=at("2026-01-01T00:00:00Z"),
        vcek=vector.vcek,
    )
    assert isinstance(late.error, CertificateExpiredError)


def _field_offsets() -> list[int]:
    """First and last byte of every field in the signed region (0x000..0x2A0)."""
    offsets = set()
    for spec in layout.FIELDS:
        if spec.offset < layout.SIGNED_SIZE:
            offsets.update({spec.offset, spec.end - 1})
    for start, _end in layout.reserved_ranges(2):
        if start < layout.SIGNED_SIZE:
            offsets.add(start)
    return sorted(offsets)


@pytest.mark.parametrize("offset", _field_offsets())
def test_flipping_any_signed_byte_is_refused(
    offset: int,
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    vector = snp_vector("snp-milan-v2-virtee")
    raw = bytearray(vector.report)
    raw[offset] ^= 0x80
    verdict = verify_report(
        bytes(raw),
        policy=stale_ok(),
        trust=amd_trust,
        now=at("2025-01-01T00:00:00Z"),
        vcek=vector.vcek,
    )
    assert not verdict.accepted
    assert verdict.error is not None


def test_upstream_negative_vectors(
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    # expected.json: trustee "byte[42] += 1 -> signature invalid",
    # "byte[384] += 1 (reported_tcb.bl) -> TCB mismatch vs VCEK extensions".
    vector = snp_vector("snp-milan-v2-trustee")
    now = at("2025-01-01T00:00:00Z")
    for index, error in ((42, SignatureError), (384, WrongEndorsementKeyError)):
        raw = bytearray(vector.report)
        raw[index] = (raw[index] + 1) % 256
        verdict = verify_report(
            bytes(raw), policy=stale_ok(), trust=amd_trust, now=now, vcek=vector.vcek
        )
        assert isinstance(verdict.error, error), (index, verdict.error)


def test_wrong_vcek_is_its_own_error(
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    report = snp_vector("snp-milan-v2-virtee").report
    other = snp_vector("snp-milan-v2-trustee").vcek  # same TCB, another chip
    verdict = verify_report(
        report, policy=stale_ok(), trust=amd_trust, now=at("2025-01-01T00:00:00Z"), vcek=other
    )
    assert verdict.reason == "snp.vcek_match"
    assert isinstance(verdict.error, WrongEndorsementKeyError)
    assert verdict.error.code == "snp.vcek_mismatch"


def test_wrong_product_line_is_its_own_error(
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    for vid in ("snp-milan-v2-virtee", "snp-milan-v5-gcp-zero-reportdata"):
        vector = snp_vector(vid)
        verdict = verify_report(
            vector.report,
            policy=stale_ok(),
            trust=amd_trust,
            now=at(VERIFY_AT[vid]),
            vcek=vector.vcek,
            product=Product.GENOA,
        )
        assert isinstance(verdict.error, ProductMismatchError), vid
        assert verdict.error.code == "snp.product"


def test_expired_vcek_is_its_own_error(
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    vector = snp_vector("snp-milan-v2-virtee")  # VCEK valid 2023-04-03..2030-04-03
    for when in ("2030-04-04T00:00:00Z", "2023-04-01T00:00:00Z"):
        verdict = verify_report(
            vector.report,
            policy=stale_ok(),
            trust=amd_trust,
            now=at(when),
            vcek=vector.vcek,
        )
        assert verdict.reason == "snp.validity"
        assert isinstance(verdict.error, CertificateExpiredError)
        assert verdict.error.code == "cert.expired"


def test_ark_with_wrong_fingerprint_is_refused(
    tmp_path: Path,
    snp_vector: Callable[[str], SnpVector],
) -> None:
    impostor = make_amd("Milan")  # a self-signed "ARK-Milan" that AMD never made
    (tmp_path / "ark.pem").write_bytes(impostor.ark.public_bytes(Encoding.PEM))
    vector = snp_vector("snp-milan-v2-virtee")
    verdict = verify_report(
        vector.report,
        policy=policy(),
        trust=TrustStore.offline(tmp_path),
        now=at("2025-01-01T00:00:00Z"),
        vcek=vector.vcek,
    )
    assert isinstance(verdict.error, FingerprintMismatchError)
    assert verdict.error.code == "chain.fingerprint"


def test_fake_hierarchy_is_not_trusted_as_amd(fake_milan: FakeAmd, amd_trust: TrustStore) -> None:
    raw = fake_milan.sign(fake_milan.report())
    verdict = verify_report(
        raw,
        policy=policy(),
        trust=TrustStore(certificates=[fake_milan.ark, fake_milan.ask]),
        now=at("2025-01-01T00:00:00Z"),
        vcek=fake_milan.vcek,
    )
    assert isinstance(verdict.error, FingerprintMismatchError)


def test_chain_cache_respects_time(
    snp_vector: Callable[[str], SnpVector],
    vectors: Path,
) -> None:
    trust = TrustStore.offline(vectors / "amd-roots")
    vector = snp_vector("snp-milan-v2-virtee")
    args: dict[str, Any] = {"policy": stale_ok(), "trust": trust, "vcek": vector.vcek}
    assert verify_report(vector.report, now=at("2025-01-01T00:00:00Z"), **args).accepted
    late = verify_report(vector.report, now=at("2031-01-01T00:00:00Z"), **args)
    assert isinstance(late.error, CertificateExpiredError)  # not served from the cache
    assert verify_report(vector.report, now=at("2025-01-02T00:00:00Z"), **args).accepted
    # The cache also follows the CRL window (2022-05-09..2023-05-09): checked inside it,
    # not checked after it, checked again inside it.
    inside, after = at("2023-04-10T00:00:00Z"), at("2023-06-01T00:00:00Z")
    for when, checked in ((inside, True), (after, False), (inside, True), (after, False)):
        verdict = verify_report(vector.report, now=when, **args)
        assert verdict.accepted and verdict.revocation_checked is checked, when


def test_policy_tcb_minimums(
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    from donjon.attestation import TcbBelowMinimumError

    vector = snp_vector("snp-milan-v2-virtee")  # reported TCB bl=3 tee=0 snp=8 ucode=115
    args: dict[str, Any] = {
        "trust": amd_trust,
        "now": at("2025-01-01T00:00:00Z"),
        "vcek": vector.vcek,
    }
    ok = verify_report(
        vector.report,
        policy=stale_ok("min_reported_tcb = { bl = 3, snp = 8, ucode = 115 }"),
        **args,
    )
    assert ok.accepted and ok.result is not None and ok.result.tcb_status == "MeetsMinimum"
    low = verify_report(
        vector.report,
        policy=stale_ok('min_reported_tcb = { snp = 9 }\nmin_firmware = "1.55"'),
        **args,
    )
    assert low.reason == "tcb.reported"
    assert isinstance(low.error, TcbBelowMinimumError)
    failed = {c.id for c in low.checks if not c.passed}
    assert failed == {"tcb.reported", "tcb.firmware"}  # firmware 1.52.4 < 1.55 as well
    # A Milan report has no FMC SPL (Turin only): a minimum on it cannot be shown to be met.
    no_fmc = verify_report(vector.report, policy=stale_ok("min_reported_tcb = { fmc = 1 }"), **args)
    assert no_fmc.reason == "tcb.reported"
    assert isinstance(no_fmc.error, TcbBelowMinimumError)
    assert "fmc=absent<1" in no_fmc.error.message
    zero = verify_report(vector.report, policy=stale_ok("min_reported_tcb = { fmc = 0 }"), **args)
    assert zero.accepted


def test_fake_turin_report_verifies_with_its_own_root(tmp_path: Path) -> None:
    from donjon.attestation.snp.report import TcbVersion

    turin = make_amd(
        "Turin", hwid=bytes(range(1, 9)), tcb=TcbVersion(bl=1, tee=2, snp=3, ucode=4, fmc=5)
    )
    raw = turin.sign(turin.report())
    assert raw[0x180:0x188] == bytes([5, 1, 2, 3, 0, 0, 0, 4])  # Turin TCB byte order
    checks = Checklist()
    verified = verify_snp(
        SnpEvidence(raw, endorsement=turin.vcek, intermediates=(turin.ask,), ark=turin.ark),
        trust=TrustStore(),
        now=at("2025-01-01T00:00:00Z"),
        checks=checks,
        sim_root=SimRoot(turin.ark.fingerprint(hashes.SHA256()).hex()),
        crl_mode="if-available",  # the fake hierarchy publishes no CRL
    )
    assert verified.product is Product.TURIN
    assert verified.key.hwid == bytes(range(1, 9))
    expired = make_amd("Milan", vcek_days=1)
    raw = expired.sign(expired.report())
    verdict = verify_report(
        raw,
        policy=policy(),
        trust=TrustStore(),
        now=at("2025-01-01T00:00:00Z") + timedelta(days=1),
        vcek=expired.vcek,
    )
    assert not verdict.accepted


def test_guest_abi_above_firmware_is_unsupported(fake_milan: FakeAmd) -> None:
    from donjon.attestation import TcbUnsupportedError
    from donjon.attestation.snp.report import FirmwareVersion, GuestPolicy

    # Guest policy asks for ABI 2.0 (bits 8..15 = 2) but the firmware runs 1.55:
    # the firmware could never have launched it, so the TCB cannot be appraised.
    policy = GuestPolicy((2 << 8) | (1 << 17) | (1 << 16))
    raw = fake_milan.sign(fake_milan.report(policy=policy, current_fw=FirmwareVersion(1, 55, 0)))
    checks = Checklist()
    with pytest.raises(Stop):
        verify_snp(
            SnpEvidence(
                raw,
                endorsement=fake_milan.vcek,
                intermediates=(fake_milan.ask,),
                ark=fake_milan.ark,
            ),
            trust=TrustStore(),
            now=at("2025-01-01T00:00:00Z"),
            checks=checks,
            sim_root=SimRoot(fake_milan.ark.fingerprint(hashes.SHA256()).hex()),
            crl_mode="if-available",  # the fake hierarchy publishes no CRL
        )
    assert checks.first_failed == "snp.firmware_abi"
    assert isinstance(checks.error, TcbUnsupportedError)
    assert checks.error.code == "tcb.unsupported"
