"""Revocation: CRL modes (require / if-available), stale, missing and incomplete CRLs, revoked
intermediates, and the certificate profile checks of the AMD chain."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attest_fakes import PSS, SNP_IDS, VERIFY_AT, FakeAmd, SnpVector, at
from attest_policies import (
    MILAN_CRL_NEXT_UPDATE,
    MILAN_VLEK,
    policy,
    stale_ok,
    vector_policy,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import (
    CertificateRevokedError,
    ChainError,
    CrlExpiredError,
    CrlMissingError,
    CrlSignatureError,
    CrlStaleError,
    TrustStore,
    verify_report,
)
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.snp.verify import SimRoot, SnpEvidence, verify_snp
from donjon.attestation.verdict import Checklist, Stop
from donjon.attestation.x509util import load_certificate


@pytest.mark.parametrize("vid", [v for v in SNP_IDS if at(VERIFY_AT[v]) > MILAN_CRL_NEXT_UPDATE])
def test_require_refuses_the_same_vector_with_a_stale_crl(
    vid: str,
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    vector = snp_vector(vid)
    verdict = verify_report(
        vector.report,
        policy=vector_policy(vid, crl_line=False),  # no crl key: the default is "require"
        trust=amd_trust,
        now=at(VERIFY_AT[vid]),
        vcek=vector.vcek,
    )
    assert not verdict.accepted
    assert verdict.reason == "snp.crl" and verdict.crl_mode == "require"
    assert isinstance(verdict.error, CrlStaleError)
    assert verdict.error.code == "crl.stale"
    message = verdict.error.message
    assert "ARK-Milan" in message and "2023-05-09T23:00:00+00:00" in message
    assert "\n" not in message
    hint = verdict.error.hint or ""
    kind = "vlek" if vid == MILAN_VLEK else "vcek"
    assert f"https://kdsintf.amd.com/{kind}/v1/Milan/crl" in hint  # AMD KDS interface spec
    assert 'crl = "if-available"' in hint


def _genoa_report(vectors: Path) -> tuple[bytes, x509.Certificate]:
    import json

    data = json.loads((vectors / "azure-cvm/trustee/az-snp-vtpm/evidence-genoa.json").read_text())
    hcl = bytes(data["report"])
    return hcl[32 : 32 + 1184], load_certificate(data["vcek"].encode())


def _pkipath_certs(path: Path) -> list[x509.Certificate]:
    from donjon.attestation.trust import parse_cert_bundle

    return parse_cert_bundle(path.read_bytes(), str(path))


def test_revoked_genoa_ask_is_refused_and_the_current_one_chosen(
    vectors: Path, tmp_path: Path
) -> None:
    report, vcek = _genoa_report(vectors)
    now = at("2023-06-01T00:00:00Z")  # inside the Genoa CRL window (2022-10-31..2023-10-31)
    ark, old_ask = _pkipath_certs(vectors / "enarx-steward/snp_genoa_ark_ask.pkipath")
    crl = (vectors / "amd-roots/crl_genoa_2022-10-31.der").read_bytes()
    only_old = tmp_path / "old"
    only_old.mkdir()
    (only_old / "ark_ask.pem").write_bytes(
        ark.public_bytes(Encoding.PEM) + old_ask.public_bytes(Encoding.PEM)
    )
    (only_old / "genoa.crl").write_bytes(crl)
    # The Genoa VCEK of 2025 postdates now, so pin time to check revocation first.
    verdict = verify_report(
        report, policy=policy(), trust=TrustStore.offline(only_old), now=now, vcek=vcek
    )
    assert verdict.reason == "snp.revocation"
    assert isinstance(verdict.error, CertificateRevokedError)
    assert "0x20001" in verdict.error.message  # SOURCES.md: serial 0x20001 is revoked
    # Revocation is permanent: once the CRL is stale (nextUpdate 2023-10-31) it still
    # revokes, and that verdict comes before the staleness one.
    late = verify_report(
        report,
        policy=policy(),
        trust=TrustStore.offline(only_old),
        now=at("2026-01-01T00:00:00Z"),
        vcek=vcek,
    )
    assert isinstance(late.error, CertificateRevokedError)
    both = tmp_path / "both"
    shutil.copytree(only_old, both)
    shutil.copy(vectors / "amd-roots/ask_ark_genoa.pem", both / "current.pem")
    verdict = verify_report(
        report,
        policy=stale_ok(),  # the Genoa CRL is stale in 2026
        trust=TrustStore.offline(both),
        now=at("2026-01-01T00:00:00Z"),
        vcek=vcek,
    )
    assert verdict.accepted, verdict.error
    chain = next(c for c in verdict.checks if c.id == "snp.chain")
    assert "serial 0x20002" in chain.reason


def test_crl_with_bad_signature_is_its_own_error(
    vectors: Path,
    tmp_path: Path,
    snp_vector: Callable[[str], SnpVector],
) -> None:
    shutil.copy(vectors / "amd-roots/ask_ark_milan.pem", tmp_path / "milan.pem")
    crl = bytearray((vectors / "amd-roots/crl_milan_2022-05-09.der").read_bytes())
    crl[-10] ^= 0x01  # inside the signature BIT STRING at the end of the DER
    (tmp_path / "milan.crl").write_bytes(bytes(crl))
    vector = snp_vector("snp-milan-v2-steward-csr")
    verdict = verify_report(
        vector.report,
        policy=policy(),
        trust=TrustStore.offline(tmp_path),
        now=at("2023-02-01T00:00:00Z"),
        vcek=vector.vcek,
    )
    assert verdict.reason == "snp.crl"
    assert isinstance(verdict.error, CrlSignatureError)
    assert verdict.error.code == "crl.signature"


def test_crl_mode_argument_overrides_the_policy(
    snp_vector: Callable[[str], SnpVector],
    amd_trust: TrustStore,
) -> None:
    vector = snp_vector("snp-milan-v2-virtee")
    args: dict[str, Any] = {
        "trust": amd_trust,
        "now": at("2025-01-01T00:00:00Z"),
        "vcek": vector.vcek,
    }
    verdict = verify_report(vector.report, policy=stale_ok(), crl_mode="require", **args)
    assert isinstance(verdict.error, CrlStaleError)
    assert isinstance(verdict.error, CrlExpiredError)  # the older name still catches it
    assert verdict.crl_mode == "require"
    lenient = verify_report(vector.report, policy=policy(), crl_mode="if-available", **args)
    assert lenient.accepted and lenient.crl_mode == "if-available"


def test_no_crl_at_all_is_its_own_error(
    vectors: Path,
    tmp_path: Path,
    snp_vector: Callable[[str], SnpVector],
) -> None:
    shutil.copy(vectors / "amd-roots/ask_ark_milan.pem", tmp_path / "milan.pem")  # no CRL
    vector = snp_vector("snp-milan-v2-steward-csr")
    args: dict[str, Any] = {
        "trust": TrustStore.offline(tmp_path),
        "now": at("2023-02-01T00:00:00Z"),  # the Milan CRL would be current: it is absent
        "vcek": vector.vcek,
    }
    verdict = verify_report(vector.report, policy=policy(), **args)
    assert verdict.reason == "snp.crl"
    assert isinstance(verdict.error, CrlMissingError)
    assert verdict.error.code == "crl.missing"
    assert "ARK-Milan" in verdict.error.message
    assert "unreadable" not in (verdict.error.hint or "")
    # A damaged CRL file is not silently ignored: the refusal names it.
    crl = (vectors / "amd-roots/crl_milan_2022-05-09.der").read_bytes()
    (tmp_path / "milan.crl").write_bytes(crl[: len(crl) // 2])
    damaged = verify_report(
        vector.report, policy=policy(), **{**args, "trust": TrustStore.offline(tmp_path)}
    )
    assert isinstance(damaged.error, CrlMissingError)
    assert f"unreadable files were skipped: {tmp_path / 'milan.crl'}" in (damaged.error.hint or "")
    lenient = verify_report(vector.report, policy=stale_ok(), **args)
    assert lenient.accepted and lenient.revocation_checked is False
    revocation = next(c for c in lenient.checks if c.id == "snp.revocation")
    assert (
        revocation.reason.startswith("NOT CHECKED") and "no CRL of ARK-Milan" in revocation.reason
    )
    assert lenient.result is not None
    assert lenient.result.advisories == ("revocation-not-checked",)


def test_a_crl_without_next_update_is_never_current(fake_milan: FakeAmd) -> None:
    raw = fake_milan.sign(fake_milan.report())
    root = SimRoot(fake_milan.ark.fingerprint(hashes.SHA256()).hex())
    now = at("2024-06-01T00:00:00Z")  # CRLs from 2024-01-01; the dated one runs 365 days

    def run(crl: x509.CertificateRevocationList) -> Checklist:
        checks = Checklist()
        evidence = SnpEvidence(
            raw,
            endorsement=fake_milan.vcek,
            intermediates=(fake_milan.ask,),
            ark=fake_milan.ark,
            crls=(crl,),
        )
        with contextlib.suppress(Stop):
            verify_snp(
                evidence,
                trust=TrustStore(),
                now=now,
                checks=checks,
                sim_root=root,
                crl_mode="require",
            )
        return checks

    dated = run(fake_milan.crl())  # current at now
    assert dated.passed, dated.error
    undated = run(fake_milan.crl_without_next_update())
    assert undated.first_failed == "snp.crl"
    assert isinstance(undated.error, CrlStaleError)
    assert "has no nextUpdate" in undated.error.message


def _sim_checks(
    fake: FakeAmd,
    *,
    vcek: x509.Certificate | None = None,
    ask: x509.Certificate | None = None,
    crls: tuple[x509.CertificateRevocationList, ...] = (),
    crl_mode: CrlMode = "if-available",
) -> Checklist:
    """Verify a fresh report of ``fake`` as sim evidence, with parts swapped in."""
    raw = fake.sign(fake.report())
    checks = Checklist()
    evidence = SnpEvidence(
        raw,
        endorsement=vcek or fake.vcek,
        intermediates=(ask or fake.ask,),
        ark=fake.ark,
        crls=crls,
    )
    with contextlib.suppress(Stop):
        verify_snp(
            evidence,
            trust=TrustStore(),
            now=at("2024-06-01T00:00:00Z"),
            checks=checks,
            sim_root=SimRoot(fake.ark.fingerprint(hashes.SHA256()).hex()),
            crl_mode=crl_mode,
        )
    return checks


def _resign(
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
    *,
    drop: tuple[type[x509.ExtensionType], ...] = (),
    add: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if not isinstance(ext.value, drop):
            builder = builder.add_extension(ext.value, critical=ext.critical)
    for value, critical in add:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(key, hashes.SHA384(), rsa_padding=PSS)


UNKNOWN_CRITICAL = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")


def test_unknown_critical_extension_in_the_chain_is_refused(fake_milan: FakeAmd) -> None:
    assert _sim_checks(fake_milan).passed  # the untouched hierarchy verifies
    vcek = _resign(fake_milan.vcek, fake_milan.ask_key, add=((UNKNOWN_CRITICAL, True),))
    checks = _sim_checks(fake_milan, vcek=vcek)
    assert checks.first_failed == "snp.chain" and isinstance(checks.error, ChainError)
    assert "unknown critical extension 1.2.3.4.5" in checks.error.message
    # The same extension, not critical, is fine (RFC 5280: ignore unknown non-critical ones).
    vcek = _resign(fake_milan.vcek, fake_milan.ask_key, add=((UNKNOWN_CRITICAL, False),))
    assert _sim_checks(fake_milan, vcek=vcek).passed


def test_an_intermediate_that_is_not_a_ca_is_refused(fake_milan: FakeAmd) -> None:
    ask = _resign(fake_milan.ask, fake_milan.ark_key, drop=(x509.BasicConstraints,))
    checks = _sim_checks(fake_milan, ask=ask)
    assert checks.first_failed == "snp.chain" and isinstance(checks.error, ChainError)
    assert "SEV-Milan has no basicConstraints" in checks.error.message


@pytest.mark.parametrize(
    ("extension", "critical", "why"),
    [
        (x509.DeltaCRLIndicator(1), True, "is a delta CRL"),
        (UNKNOWN_CRITICAL, True, "unknown critical extension 1.2.3.4.5"),
    ],
)
def test_an_incomplete_crl_does_not_count_as_current(
    fake_milan: FakeAmd, extension: x509.ExtensionType, critical: bool, why: str
) -> None:
    complete = fake_milan.crl()
    assert _sim_checks(fake_milan, crls=(complete,), crl_mode="require").passed
    partial = fake_milan.crl(extensions=((extension, critical),))
    checks = _sim_checks(fake_milan, crls=(partial,), crl_mode="require")
    assert checks.first_failed == "snp.crl" and isinstance(checks.error, CrlStaleError)
    assert why in checks.error.message
    # Its revocations still apply: revoking the ASK through it is refused in any mode.
    revoking = fake_milan.crl((0x10001,), extensions=((extension, critical),))
    checks = _sim_checks(fake_milan, crls=(revoking,))
    assert isinstance(checks.error, CertificateRevokedError)
