"""``donjon attest show|verify`` on Azure evidence: an HCL report with its quote, and Trustee's
az-snp-vtpm / az-tdx-vtpm JSON. Same flags and output as the other formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_attest_cli import run

SNP = "azure-cvm/trustee/az-snp-vtpm"
TDX = "azure-cvm/trustee/az-tdx-vtpm"


@pytest.fixture
def console_policy(tmp_path: Path) -> Path:
    path = tmp_path / "azure.toml"
    path.write_text("[azure]\naccept_any_workload = true\nallow_console = true\n")
    return path


def hcl_args(vectors: Path, *extra: str) -> list[str]:
    return [
        "attest", "verify", str(vectors / SNP / "hcl-report.bin"),
        "--quote", str(vectors / SNP / "tpm-quote-v1.json"),
        "--vcek", str(vectors / SNP / "vcek.pem"),
        "--trust-dir", str(vectors / "amd-roots"),
        "--at", "2025-01-01T00:00Z", "--crl-mode", "if-available", *extra,
    ]  # fmt: skip


def test_verify_hcl_report_with_its_quote_json(
    vectors: Path,
    expected: dict[str, Any],
    console_policy: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(hcl_args(vectors, "--policy", str(console_policy), "--json"), capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["accepted"], doc["platform"]) == (True, "azure-snp")
    assert doc["form"] == "Azure HCL report"
    want = next(v for v in expected["vectors"] if v["id"] == "snp-milan-v2-azure-hcl")
    report = doc["details"]["report"]
    for name in ("measurement", "report_data", "chip_id", "id_key_digest"):
        assert report[name] == want["computed"]["report"][name]  # lowercase hex, as expected.json
    quote = doc["details"]["azure"]["quote"]
    assert quote["extra_data"] == b"challenge".hex()
    assert sorted(quote["pcrs"], key=int) == [str(i) for i in range(24)]
    assert doc["revocation"] == {"crl_mode": "if-available", "checked": False,
                                 "crl_mode_from": "flag"}  # fmt: skip


def test_verify_hcl_report_default_policy_refuses_the_console(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(hcl_args(vectors), capsys)
    assert code != 0
    assert "REJECTED at policy.console (policy.console)" in out
    assert "vm               console-enabled True" in out
    assert err.count("\n") == 1 and "serial console" in err  # one line, no traceback


def test_verify_hcl_report_without_quote_says_what_is_missing(
    vectors: Path, console_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = hcl_args(vectors, "--policy", str(console_policy))
    del args[3:5]  # --quote FILE
    code, out, _ = run(args, capsys)
    assert code != 0
    assert "REJECTED at azure.quote_signature (collateral.missing)" in out
    assert "--quote tpm-quote.json" in out


def test_verify_trustee_json(
    vectors: Path, console_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        ["attest", "verify", str(vectors / SNP / "evidence-genoa.json"),
         "--trust-dir", str(vectors / "amd-roots"), "--policy", str(console_policy),
         "--at", "2025-06-01", "--crl-mode", "if-available"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "Trustee Azure vTPM evidence (JSON)" in out
    assert "platform azure-snp  product Genoa" in out
    assert "ACCEPTED (revocation NOT checked)" in out


def test_verify_trustee_tdx_json(
    vectors: Path, console_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["attest", "verify", str(vectors / TDX / "evidence-v1.json"),
            "--policy", str(console_policy), "--trust-dir", str(vectors / "intel-roots"),
            "--at", "2025-06-01", "--json"]  # fmt: skip
    code, out, _ = run(base, capsys)
    assert code != 0  # no TCB Info for its FMSPC among the vectors, and tcb_mode = require
    assert json.loads(out)["reason"] == "dcap.collateral"
    code, out, err = run([*base, "--tcb-mode", "if-available"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["platform"], doc["result"]["tcb_status"]) == ("azure-tdx", "NotAppraised")
    assert doc["details"]["td_report"]["mrtd"].startswith("024a32b070383331")


def test_show_hcl_report_and_trustee_tdx(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hcl = str(vectors / SNP / "hcl-report.bin")
    code, out, err = run(["attest", "show", hcl, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["form"], doc["platform"]) == ("Azure HCL report", "azure-snp")
    assert doc["runtime_claims"]["vm_configuration"]["vmUniqueId"] == (
        "911B0EF8-9DBA-48B0-B275-4E4DF2D39252"
    )
    assert doc["report"]["measurement"].startswith("9ac48fcac8a2d88a")
    code, out, err = run(["attest", "show", str(vectors / TDX / "evidence-v1.json")], capsys)
    assert code == 0, err
    assert "Trustee Azure vTPM evidence (JSON)" in out
    assert "024a32b070383331181619fa387cb4d5" in out  # the TDREPORT's MRTD
