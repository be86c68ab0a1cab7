"""SNP verification of the real vectors, and each way a report must be refused."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from attest_fakes import PSS, SNP_IDS, VERIFY_AT, FakeAmd, at, make_amd
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import (
    CertificateExpiredError,
    CertificateRevokedError,
    ChainError,
    CrlExpiredError,
    CrlMissingError,
    CrlSignatureError,
    CrlStaleError,
    DebugNotAllowedError,
    FingerprintMismatchError,
    Policy,
    Product,
    ProductMismatchError,
    SignatureError,
    TrustStore,
    WrongEndorsementKeyError,
    verify_report,
)
from donjon.attestation.snp import layout
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.snp.verify import SimRoot, SnpEvidence, verify_snp
from donjon.attestation.verdict import Checklist, Stop
from donjon.attestation.x509util import load_certificate

MILAN_VLEK = "snp-milan-v3-vlek-trustee"
#: nextUpdate of the only Milan CRL in the vectors (amd-roots/crl_milan_2022-05-09.der).
MILAN_CRL_NEXT_UPDATE = at("2023-05-09T23:00:00Z")
#: After that instant no current Milan CRL exists in the vectors, so a test that verifies
#: later must accept, explicitly, that revocation is not checked.
STALE_CRL_OK = 'crl = "if-available"'


def policy(text: str = "") -> Policy:
    return Policy.from_toml(text, source="test-policy.toml", base_dir=Path("."))


def stale_ok(extra: str = "") -> Policy:
    """An [snp] policy that knowingly accepts a stale Milan CRL, plus ``extra`` lines."""
    return policy(f"[snp]\n{STALE_CRL_OK}\n{extra}")


def vector_policy(vid: str, *, crl_line: bool = True) -> Policy:
    """What each vector needs; ``crl = "if-available"`` where its CRL is stale at its time."""
    lines = ["[snp]"]
    if crl_line and at(VERIFY_AT[vid]) > MILAN_CRL_NEXT_UPDATE:
        lines.append(STALE_CRL_OK)
    if vid == MILAN_VLEK:
        lines.append("vmpl = 1")  # the AWS report was requested at VMPL 1 (expected.json)
    if vid == "snp-milan-v2-go-sev-guest":
        lines.append("allow_debug = true")  # its guest policy 0xb0000 has DEBUG set
    return policy("\n".join(lines))


@pytest.mark.parametrize("vid", SNP_IDS)
def test_every_vector_verifies_at_its_time(
    vid: str,
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    vector = vector_by_id(vid)
    verdict = verify_report(
        load_report(vector),
        policy=vector_policy(vid),
        trust=amd_trust,
        now=at(VERIFY_AT[vid]),
        vcek=load_vcek(vector),
    )
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert verdict.result is not None
    assert verdict.result.product == "Milan"
    assert verdict.result.measurement.hex() == vector["computed"]["report"]["measurement"]
    ext = vector["computed"]["cert_extensions"]
    tcb = " ".join(f"{k}={ext[k]}" for k in ("bl", "tee", "snp", "ucode"))
    assert verdict.result.tcb == tcb
    ids = [c.id for c in verdict.checks]
    for required in ("snp.signature", "snp.chain", "snp.vcek_match", "snp.debug"):
        assert required in ids
    assert verdict.not_after_limit is not None
    # The Milan CRL (nextUpdate 2023-05-09, SOURCES.md) bounds validity when it is current.
    limit = "2023-05-09" if vid == "snp-milan-v2-steward-csr" else vector["cert_validity"][1][:10]
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


@pytest.mark.parametrize("vid", [v for v in SNP_IDS if at(VERIFY_AT[v]) > MILAN_CRL_NEXT_UPDATE])
def test_require_refuses_the_same_vector_with_a_stale_crl(
    vid: str,
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    vector = vector_by_id(vid)
    verdict = verify_report(
        load_report(vector),
        policy=vector_policy(vid, crl_line=False),  # no crl key: the default is "require"
        trust=amd_trust,
        now=at(VERIFY_AT[vid]),
        vcek=load_vcek(vector),
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


def test_debug_report_rejected_by_default_accepted_with_allow_debug(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    vector = vector_by_id("snp-milan-v2-go-sev-guest")
    assert vector["computed"]["report"]["policy_decoded"]["debug_allowed"] is True
    args: dict[str, Any] = {
        "trust": amd_trust,
        "now": at("2025-01-01T00:00:00Z"),
        "vcek": load_vcek(vector),
    }
    refused = verify_report(load_report(vector), policy=stale_ok(), **args)
    assert not refused.accepted
    assert refused.reason == "snp.debug"
    assert isinstance(refused.error, DebugNotAllowedError)
    allowed = verify_report(load_report(vector), policy=stale_ok("allow_debug = true"), **args)
    assert allowed.accepted
    assert allowed.result is not None and allowed.result.debug is True


def test_vlek_report_goes_through_the_asvk(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    vector = vector_by_id(MILAN_VLEK)
    verdict = verify_report(
        load_report(vector),
        policy=vector_policy(MILAN_VLEK),
        trust=amd_trust,
        now=at("2025-06-01T00:00:00Z"),
        vcek=load_vcek(vector),
    )
    assert verdict.accepted
    chain = next(c for c in verdict.checks if c.id == "snp.chain")
    assert "SEV-VLEK-Milan" in chain.reason  # the ASVK, not the ASK
    assert verdict.details is not None
    assert verdict.details["endorsement_key"]["csp_id"] == "CN=cc-us-east-2.amazonaws.com"
    # Outside the VLEK's one-year life (2024-12-10..2025-12-10) it is refused.
    late = verify_report(
        load_report(vector),
        policy=vector_policy(MILAN_VLEK),
        trust=amd_trust,
        now=at("2026-01-01T00:00:00Z"),
        vcek=load_vcek(vector),
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
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    vector = vector_by_id("snp-milan-v2-virtee")
    raw = bytearray(load_report(vector))
    raw[offset] ^= 0x80
    verdict = verify_report(
        bytes(raw),
        policy=stale_ok(),
        trust=amd_trust,
        now=at("2025-01-01T00:00:00Z"),
        vcek=load_vcek(vector),
    )
    assert not verdict.accepted
    assert verdict.error is not None


def test_upstream_negative_vectors(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    # expected.json: trustee "byte[42] += 1 -> signature invalid",
    # "byte[384] += 1 (reported_tcb.bl) -> TCB mismatch vs VCEK extensions".
    vector = vector_by_id("snp-milan-v2-trustee")
    now = at("2025-01-01T00:00:00Z")
    for index, error in ((42, SignatureError), (384, WrongEndorsementKeyError)):
        raw = bytearray(load_report(vector))
        raw[index] = (raw[index] + 1) % 256
        verdict = verify_report(
            bytes(raw), policy=stale_ok(), trust=amd_trust, now=now, vcek=load_vcek(vector)
        )
        assert isinstance(verdict.error, error), (index, verdict.error)


def test_wrong_vcek_is_its_own_error(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    report = load_report(vector_by_id("snp-milan-v2-virtee"))
    other = load_vcek(vector_by_id("snp-milan-v2-trustee"))  # same TCB, another chip
    verdict = verify_report(
        report, policy=stale_ok(), trust=amd_trust, now=at("2025-01-01T00:00:00Z"), vcek=other
    )
    assert verdict.reason == "snp.vcek_match"
    assert isinstance(verdict.error, WrongEndorsementKeyError)
    assert verdict.error.code == "snp.vcek_mismatch"


def test_wrong_product_line_is_its_own_error(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    for vid in ("snp-milan-v2-virtee", "snp-milan-v5-gcp-zero-reportdata"):
        vector = vector_by_id(vid)
        verdict = verify_report(
            load_report(vector),
            policy=stale_ok(),
            trust=amd_trust,
            now=at(VERIFY_AT[vid]),
            vcek=load_vcek(vector),
            product=Product.GENOA,
        )
        assert isinstance(verdict.error, ProductMismatchError), vid
        assert verdict.error.code == "snp.product"


def test_expired_vcek_is_its_own_error(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    vector = vector_by_id("snp-milan-v2-virtee")  # VCEK valid 2023-04-03..2030-04-03
    for when in ("2030-04-04T00:00:00Z", "2023-04-01T00:00:00Z"):
        verdict = verify_report(
            load_report(vector),
            policy=stale_ok(),
            trust=amd_trust,
            now=at(when),
            vcek=load_vcek(vector),
        )
        assert verdict.reason == "snp.validity"
        assert isinstance(verdict.error, CertificateExpiredError)
        assert verdict.error.code == "cert.expired"


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
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
) -> None:
    shutil.copy(vectors / "amd-roots/ask_ark_milan.pem", tmp_path / "milan.pem")
    crl = bytearray((vectors / "amd-roots/crl_milan_2022-05-09.der").read_bytes())
    crl[-10] ^= 0x01  # inside the signature BIT STRING at the end of the DER
    (tmp_path / "milan.crl").write_bytes(bytes(crl))
    vector = vector_by_id("snp-milan-v2-steward-csr")
    verdict = verify_report(
        load_report(vector),
        policy=policy(),
        trust=TrustStore.offline(tmp_path),
        now=at("2023-02-01T00:00:00Z"),
        vcek=load_vcek(vector),
    )
    assert verdict.reason == "snp.crl"
    assert isinstance(verdict.error, CrlSignatureError)
    assert verdict.error.code == "crl.signature"


def test_crl_mode_argument_overrides_the_policy(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    vector = vector_by_id("snp-milan-v2-virtee")
    args: dict[str, Any] = {
        "trust": amd_trust,
        "now": at("2025-01-01T00:00:00Z"),
        "vcek": load_vcek(vector),
    }
    verdict = verify_report(load_report(vector), policy=stale_ok(), crl_mode="require", **args)
    assert isinstance(verdict.error, CrlStaleError)
    assert isinstance(verdict.error, CrlExpiredError)  # the older name still catches it
    assert verdict.crl_mode == "require"
    lenient = verify_report(load_report(vector), policy=policy(), crl_mode="if-available", **args)
    assert lenient.accepted and lenient.crl_mode == "if-available"


def test_no_crl_at_all_is_its_own_error(
    vectors: Path,
    tmp_path: Path,
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
) -> None:
    shutil.copy(vectors / "amd-roots/ask_ark_milan.pem", tmp_path / "milan.pem")  # no CRL
    vector = vector_by_id("snp-milan-v2-steward-csr")
    args: dict[str, Any] = {
        "trust": TrustStore.offline(tmp_path),
        "now": at("2023-02-01T00:00:00Z"),  # the Milan CRL would be current: it is absent
        "vcek": load_vcek(vector),
    }
    verdict = verify_report(load_report(vector), policy=policy(), **args)
    assert verdict.reason == "snp.crl"
    assert isinstance(verdict.error, CrlMissingError)
    assert verdict.error.code == "crl.missing"
    assert "ARK-Milan" in verdict.error.message
    assert "unreadable" not in (verdict.error.hint or "")
    # A damaged CRL file is not silently ignored: the refusal names it.
    crl = (vectors / "amd-roots/crl_milan_2022-05-09.der").read_bytes()
    (tmp_path / "milan.crl").write_bytes(crl[: len(crl) // 2])
    damaged = verify_report(
        load_report(vector), policy=policy(), **{**args, "trust": TrustStore.offline(tmp_path)}
    )
    assert isinstance(damaged.error, CrlMissingError)
    assert f"unreadable files were skipped: {tmp_path / 'milan.crl'}" in (damaged.error.hint or "")
    lenient = verify_report(load_report(vector), policy=stale_ok(), **args)
    assert lenient.accepted and lenient.revocation_checked is False
    revocation = next(c for c in lenient.checks if c.id == "snp.revocation")
    assert (
        revocation.reason.startswith("NOT CHECKED") and "no CRL of ARK-Milan" in revocation.reason
    )
    assert lenient.result is not None
    assert lenient.result.advisories == ("revocation-not-checked",)


def test_ark_with_wrong_fingerprint_is_refused(
    tmp_path: Path,
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
) -> None:
    impostor = make_amd("Milan")  # a self-signed "ARK-Milan" that AMD never made
    (tmp_path / "ark.pem").write_bytes(impostor.ark.public_bytes(Encoding.PEM))
    vector = vector_by_id("snp-milan-v2-virtee")
    verdict = verify_report(
        load_report(vector),
        policy=policy(),
        trust=TrustStore.offline(tmp_path),
        now=at("2025-01-01T00:00:00Z"),
        vcek=load_vcek(vector),
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
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    vectors: Path,
) -> None:
    trust = TrustStore.offline(vectors / "amd-roots")
    vector = vector_by_id("snp-milan-v2-virtee")
    args: dict[str, Any] = {"policy": stale_ok(), "trust": trust, "vcek": load_vcek(vector)}
    assert verify_report(load_report(vector), now=at("2025-01-01T00:00:00Z"), **args).accepted
    late = verify_report(load_report(vector), now=at("2031-01-01T00:00:00Z"), **args)
    assert isinstance(late.error, CertificateExpiredError)  # not served from the cache
    assert verify_report(load_report(vector), now=at("2025-01-02T00:00:00Z"), **args).accepted
    # The cache also follows the CRL window (2022-05-09..2023-05-09): checked inside it,
    # not checked after it, checked again inside it.
    inside, after = at("2023-04-10T00:00:00Z"), at("2023-06-01T00:00:00Z")
    for when, checked in ((inside, True), (after, False), (inside, True), (after, False)):
        verdict = verify_report(load_report(vector), now=when, **args)
        assert verdict.accepted and verdict.revocation_checked is checked, when


def test_policy_tcb_minimums(
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
    load_vcek: Callable[[dict[str, Any]], x509.Certificate],
    amd_trust: TrustStore,
) -> None:
    from donjon.attestation import TcbBelowMinimumError

    vector = vector_by_id("snp-milan-v2-virtee")  # reported TCB bl=3 tee=0 snp=8 ucode=115
    args: dict[str, Any] = {
        "trust": amd_trust,
        "now": at("2025-01-01T00:00:00Z"),
        "vcek": load_vcek(vector),
    }
    ok = verify_report(
        load_report(vector),
        policy=stale_ok("min_reported_tcb = { bl = 3, snp = 8, ucode = 115 }"),
        **args,
    )
    assert ok.accepted and ok.result is not None and ok.result.tcb_status == "MeetsMinimum"
    low = verify_report(
        load_report(vector),
        policy=stale_ok('min_reported_tcb = { snp = 9 }\nmin_firmware = "1.55"'),
        **args,
    )
    assert low.reason == "tcb.reported"
    assert isinstance(low.error, TcbBelowMinimumError)
    failed = {c.id for c in low.checks if not c.passed}
    assert failed == {"tcb.reported", "tcb.firmware"}  # firmware 1.52.4 < 1.55 as well
    # A Milan report has no FMC SPL (Turin only): a minimum on it cannot be shown to be met.
    no_fmc = verify_report(
        load_report(vector), policy=stale_ok("min_reported_tcb = { fmc = 1 }"), **args
    )
    assert no_fmc.reason == "tcb.reported"
    assert isinstance(no_fmc.error, TcbBelowMinimumError)
    assert "fmc=absent<1" in no_fmc.error.message
    zero = verify_report(
        load_report(vector), policy=stale_ok("min_reported_tcb = { fmc = 0 }"), **args
    )
    assert zero.accepted


def test_fake_turin_report_verifies_with_its_own_root(tmp_path: Path) -> None:
    from donjon.attestation.snp.report import TcbVersion
    from donjon.attestation.snp.verify import SimRoot, SnpEvidence, verify_snp
    from donjon.attestation.verdict import Checklist

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
    from donjon.attestation.snp.verify import SimRoot, SnpEvidence, verify_snp
    from donjon.attestation.verdict import Checklist, Stop

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


def test_a_crl_without_next_update_is_never_current(fake_milan: FakeAmd) -> None:
    from donjon.attestation.snp.verify import SimRoot, SnpEvidence, verify_snp
    from donjon.attestation.verdict import Checklist, Stop

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
