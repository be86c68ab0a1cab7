"""Real Azure CVM evidence (``../shared/vectors/azure-cvm``): SNP and TDX HCL reports, vTPM
quotes, Trustee's evidence JSON.

Parsed fields are checked against ``expected.json`` (entry ``snp-milan-v2-azure-hcl``)
and the facts SOURCES.md states; every signed part is then flipped and must be
refused by its own check, with its own error code.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from donjon.attestation import TrustStore
from donjon.attestation.azure.evidence import parse_trustee_evidence
from donjon.attestation.azure.hcl import HardwareKind, parse_hcl_report
from donjon.attestation.azure.runtime import attestation_key, parse_runtime_claims
from donjon.attestation.azure.tdreport import check_quote_matches, parse_td_report, quote_body
from donjon.attestation.azure.tpm import TPM_ALG_SHA256, parse_attest
from donjon.attestation.csr import verify_evidence
from donjon.attestation.errors import TdReportMismatchError
from donjon.attestation.policy import Policy
from donjon.attestation.registry import VerifyOptions
from donjon.attestation.trust import parse_cert_bundle
from donjon.attestation.verdict import Verdict
from donjon.attestation.verifiers import REGISTRY

SNP = "azure-cvm/trustee/az-snp-vtpm"
TDX = "azure-cvm/trustee/az-tdx-vtpm"
#: Inside every certificate's validity (the Milan VCEK from 2023-05-02, the v1/Genoa ones
#: from late January 2025).
AT_2025 = datetime(2025, 6, 1, tzinfo=UTC)
#: The offset of the SNP report and of the runtime claims in an HCL report (its layout).
HW, CLAIMS = 32, 32 + 1184 + 20


def allow_console() -> Policy:
    text = "[azure]\naccept_any_workload = true\nallow_console = true\n"
    return Policy.from_toml(text, source="vectors.toml", base_dir=Path.cwd())


@pytest.fixture(scope="module")
def trust(vectors: Path) -> TrustStore:
    return TrustStore.offline(vectors / "amd-roots")


@pytest.fixture(scope="module")
def hcl_entry(expected: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in expected["vectors"] if v["id"] == "snp-milan-v2-azure-hcl")


def judge(
    data: bytes,
    trust: TrustStore,
    *,
    material: dict[str, Any] | None = None,
    policy: Policy | None = None,
    crl_mode: str = "if-available",
    tcb_mode: str | None = None,
) -> Verdict:
    found = REGISTRY.recognise(data)
    assert found is not None
    form, evidence = found
    options = VerifyOptions(
        crl_mode=crl_mode,  # type: ignore[arg-type]
        tcb_mode=tcb_mode,  # type: ignore[arg-type]
        material=material or {},
    )
    return verify_evidence(
        evidence, form, policy=policy or allow_console(), trust=trust, now=AT_2025, options=options
    )


def snp_material(vectors: Path, quote: bytes | None = None) -> dict[str, Any]:
    chain = parse_cert_bundle((vectors / SNP / "vcek.pem").read_bytes(), "vcek.pem")
    return {
        "vcek": chain[0],
        "chain": tuple(chain[1:]),
        "tpm_quote": quote or (vectors / SNP / "tpm-quote-v1.json").read_bytes(),
    }


def refused(verdict: Verdict) -> tuple[str | None, str | None]:
    return verdict.reason, None if verdict.error is None else verdict.error.code


# --- SNP: the HCL report, its quote, the VCEK chain ------------------------------------------


def test_snp_hcl_report_fields_match_expected(vectors: Path, hcl_entry: dict[str, Any]) -> None:
    data = (vectors / hcl_entry["evidence"]).read_bytes()
    hcl = parse_hcl_report(data)
    assert (hcl.kind, hcl.version, len(hcl.hardware_report)) == (HardwareKind.SNP, 1, 1184)
    # expected.json notes: "SNP report = hcl-report.bin[32:1216]".
    assert hcl.hardware_report == data[32:1216]
    report = _show(data)["report"]
    want = hcl_entry["computed"]["report"]
    for name in ("version", "guest_svn", "family_id", "image_id", "vmpl", "report_data",
                 "measurement", "host_data", "id_key_digest", "author_key_digest", "report_id",
                 "chip_id", "signing_key"):  # fmt: skip
        assert report[name] == want[name], name
    assert report["policy"]["raw"] == want["policy"]
    for name in ("reported_tcb", "launch_tcb", "committed_tcb", "current_tcb"):
        assert report[name] == want[name], name
    # "report_data[0:32] == SHA-256(runtime-claims JSON that follows)".
    assert hashlib.sha256(hcl.runtime_claims).hexdigest() == want["report_data"][:64]


def _show(data: bytes) -> dict[str, Any]:
    found = REGISTRY.recognise(data)
    assert found is not None
    return found[0].verifier.show_bare(found[1])


def test_snp_runtime_claims_hold_the_ak_that_signed_the_quote(vectors: Path) -> None:
    hcl = parse_hcl_report((vectors / SNP / "hcl-report.bin").read_bytes())
    claims = parse_runtime_claims(hcl.runtime_claims)
    assert [k.kid for k in claims.keys] == ["HCLAkPub", "HCLEkPub"]
    assert attestation_key(claims).key_size == 2048
    assert claims.vm.to_dict() == {
        "console-enabled": True,
        "secure-boot": True,
        "tpm-enabled": True,
        "vmUniqueId": "911B0EF8-9DBA-48B0-B275-4E4DF2D39252",
    }
    quote = json.loads((vectors / SNP / "tpm-quote-v1.json").read_text())
    info = parse_attest(bytes.fromhex(quote["message"]))
    assert info.extra_data == b"challenge"  # Trustee's test nonce, as written in the message
    assert [(s.hash_alg, s.pcrs) for s in info.selections] == [(TPM_ALG_SHA256, tuple(range(24)))]
    assert len(quote["pcrs"]) == 24


def test_snp_hcl_report_with_its_quote_verifies(vectors: Path, trust: TrustStore) -> None:
    data = (vectors / SNP / "hcl-report.bin").read_bytes()
    verdict = judge(data, trust, material=snp_material(vectors))
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert verdict.platform == "azure-snp"
    assert verdict.result is not None and verdict.result.platform == "azure-snp"
    assert verdict.result.product == "Milan"
    assert verdict.result.tcb == "bl=3 tee=0 snp=8 ucode=115"
    passed = {c.id for c in verdict.checks if c.passed}
    assert {"snp.signature", "snp.chain", "azure.report_data", "azure.ak",
            "azure.quote_signature", "azure.quote", "azure.pcr_digest"} <= passed  # fmt: skip
    binding = next(c for c in verdict.checks if c.id == "binding.report_data")
    assert binding.reason == "not checked: bare evidence binds no key"


def test_snp_vector_is_refused_by_default_for_its_serial_console(
    vectors: Path, trust: TrustStore
) -> None:
    data = (vectors / SNP / "hcl-report.bin").read_bytes()
    verdict = judge(data, trust, material=snp_material(vectors), policy=Policy.default())
    assert refused(verdict) == ("policy.console", "policy.console")


def test_an_hcl_report_without_its_quote_is_refused(vectors: Path, trust: TrustStore) -> None:
    data = (vectors / SNP / "hcl-report.bin").read_bytes()
    material = snp_material(vectors)
    del material["tpm_quote"]
    verdict = judge(data, trust, material=material)
    assert refused(verdict) == ("azure.quote_signature", "collateral.missing")


@pytest.mark.parametrize(
    ("name", "product"), [("evidence-v1.json", "Milan"), ("evidence-genoa.json", "Genoa")]
)
def test_trustee_snp_evidence_json_verifies(
    vectors: Path, trust: TrustStore, name: str, product: str
) -> None:
    verdict = judge((vectors / SNP / name).read_bytes(), trust)
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert verdict.result is not None
    assert (verdict.result.platform, verdict.result.product) == ("azure-snp", product)


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


def test_snp_byte_flips_are_each_refused_by_their_own_check(
    vectors: Path, trust: TrustStore
) -> None:
    data = (vectors / SNP / "hcl-report.bin").read_bytes()
    quote = json.loads((vectors / SNP / "tpm-quote-v1.json").read_text())
    claims_at = data.index(b'"vmUniqueId":"911B') + len(b'"vmUniqueId":"')

    def quote_with(**changes: Any) -> bytes:
        return json.dumps({**quote, **changes}).encode()

    message = bytes.fromhex(quote["message"])
    signature = bytes.fromhex(quote["signature"])
    pcr0 = bytes.fromhex(quote["pcrs"][0])
    cases = {
        # the SNP report's measurement: AMD's signature no longer verifies
        "measurement": (_flip(data, HW + 0x90), None, ("snp.signature", "snp.signature")),
        # one digit of vmUniqueId in the runtime claims: not what report_data hashes
        "runtime claims": (
            _flip(data, claims_at, 0x01),
            None,
            ("azure.report_data", "azure.report_data"),
        ),
        "header version": (_flip(data, 4, 0x04), None, ("azure.hcl_report", "evidence.version")),
        "quote message": (
            data,
            quote_with(message=_flip(message, 60).hex()),
            ("azure.quote_signature", "azure.quote_signature"),
        ),
        "quote signature": (
            data,
            quote_with(signature=_flip(signature, 100).hex()),
            ("azure.quote_signature", "azure.quote_signature"),
        ),
        "a PCR value": (
            data,
            quote_with(pcrs=[_flip(pcr0, 0).hex(), *quote["pcrs"][1:]]),
            ("azure.pcr_digest", "azure.pcr_digest"),
        ),
    }
    for what, (hcl, quote_json, want) in cases.items():
        verdict = judge(hcl, trust, material=snp_material(vectors, quote_json))
        assert refused(verdict) == want, what


def test_a_quote_of_another_vm_is_refused(vectors: Path, trust: TrustStore) -> None:
    """The Genoa VM's genuine quote, sent with the Milan VM's HCL report: another AK signed it."""
    genoa = json.loads((vectors / SNP / "evidence-genoa.json").read_text())
    verdict = judge(
        (vectors / SNP / "hcl-report.bin").read_bytes(),
        trust,
        material=snp_material(vectors, json.dumps(genoa["quote"]).encode()),
    )
    assert refused(verdict) == ("azure.quote_signature", "azure.quote_signature")


# --- TDX: the HCL report holds a TDREPORT; the TD quote comes from IMDS ----------------------


def test_tdx_hcl_report_and_td_quote_describe_the_same_td(vectors: Path) -> None:
    hcl = parse_hcl_report((vectors / TDX / "hcl-report.bin").read_bytes())
    assert (hcl.kind, hcl.version, len(hcl.hardware_report)) == (HardwareKind.TDX, 2, 1024)
    td = parse_td_report(hcl.hardware_report)
    quote = (vectors / TDX / "td-quote.bin").read_bytes()
    assert int.from_bytes(quote[:2], "little") == 4  # SOURCES.md: "Real TDX quote v4"
    assert td.report_data == hashlib.sha256(hcl.runtime_claims).digest() + bytes(32)
    assert quote_body(quote)[136:184] == td.mrtd
    assert "TDREPORT" in check_quote_matches(td, quote)
    claims = parse_runtime_claims(hcl.runtime_claims)
    assert claims.vm.vm_unique_id == "6332533D-5649-4D02-8AA7-8F64B7C3EE21"
    assert dict(claims.vm.fields)["tpm-persisted"] is False
    with pytest.raises(TdReportMismatchError, match="mrtd"):
        check_quote_matches(td, _flip(quote, 48 + 140))


def test_trustee_tdx_evidence_verifies_through_the_dcap_verifier(
    vectors: Path, trust: TrustStore
) -> None:
    data = (vectors / TDX / "evidence-v1.json").read_bytes()
    evidence = parse_trustee_evidence(data)
    assert evidence.td_quote == (vectors / TDX / "td-quote.bin").read_bytes()
    assert evidence.hcl_report == (vectors / TDX / "hcl-report.bin").read_bytes()
    # No TCB Info for this FMSPC is among the vectors: signature and chain only, said so.
    verdict = judge(data, trust, tcb_mode="if-available")
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert verdict.result is not None
    assert (verdict.result.platform, verdict.result.tcb_status) == ("azure-tdx", "NotAppraised")
    assert verdict.result.measurement.hex().startswith("024a32b070383331")  # the TDREPORT's MRTD
    assert "tcb-not-appraised" in verdict.result.advisories
    passed = {c.id for c in verdict.checks if c.passed}
    assert {"dcap.quote_signature", "dcap.pck_chain", "dcap.qe_binding", "azure.td_report",
            "azure.report_data", "azure.quote_signature", "azure.pcr_digest"} <= passed  # fmt: skip
    # Under the default tcb_mode the missing TCB Info is a refusal, by the DCAP verifier.
    assert judge(data, trust).reason == "dcap.collateral"


def test_tdx_byte_flips_are_each_refused_by_their_own_check(
    vectors: Path, trust: TrustStore
) -> None:
    hcl = (vectors / TDX / "hcl-report.bin").read_bytes()
    quote = (vectors / TDX / "td-quote.bin").read_bytes()
    tpm = json.dumps(json.loads((vectors / TDX / "evidence-v1.json").read_text())["tpm_quote"])
    claims_at = hcl.index(b'"vmUniqueId":"6332') + len(b'"vmUniqueId":"')
    cases = {
        "TD quote body (MRTD)": (hcl, _flip(quote, 48 + 140), "dcap.quote_signature"),
        "runtime claims": (_flip(hcl, claims_at), quote, "azure.report_data"),
        "TDREPORT's RTMR3 (MAC'd locally, not signed)": (_flip(hcl, HW + 870), quote,
                                                          "azure.td_report"),
    }  # fmt: skip
    for what, (report, td_quote, want) in cases.items():
        material = {"td_quote": td_quote, "tpm_quote": tpm.encode()}
        verdict = judge(report, trust, material=material, tcb_mode="if-available")
        assert verdict.reason == want, what


def test_tdx_quote_of_another_td_is_refused(vectors: Path, trust: TrustStore) -> None:
    hcl = (vectors / TDX / "hcl-report.bin").read_bytes()
    # A genuine quote of another Azure TD (teekit's sample): DCAP accepts it, the match fails.
    other = base64.b64decode((vectors / "tdx/teekit/tdx-v4-azure.b64").read_text())
    tpm = json.dumps(json.loads((vectors / TDX / "evidence-v1.json").read_text())["tpm_quote"])
    material = {"td_quote": other, "tpm_quote": tpm.encode()}
    verdict = judge(hcl, trust, material=material, tcb_mode="if-available")
    assert refused(verdict) == ("azure.td_report", "azure.td_report")
