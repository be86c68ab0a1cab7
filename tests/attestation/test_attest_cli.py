"""``donjon attest show`` and ``donjon attest verify``, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.cli.main import main

STEWARD = "enarx-steward/snp_milan.signed.crl.csr"
POLICY = "enarx-steward/steward_testdata_policy.toml"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_steward_csr_json(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        [
            "attest",
            "verify",
            str(vectors / STEWARD),
            "--policy",
            str(vectors / POLICY),
            "--trust-dir",
            str(vectors / "amd-roots"),
            "--at",
            "2023-02-01T00:00Z",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["accepted"] is True and data["platform"] == "snp"
    assert data["form"] == "DER CSR"
    assert data["result"]["measurement"].startswith("ff717ae719840c93")
    assert data["evaluated_at"] == "2023-02-01T00:00:00+00:00"
    assert {c["id"] for c in data["checks"]} >= {"snp.signature", "binding.report_data"}
    statuses = {c["id"]: c["status"] for c in data["checks"]}
    # The CSR carries a current CRL at that time and binds the key: both really checked.
    assert statuses["snp.revocation"] == "passed" and statuses["binding.report_data"] == "passed"
    assert all(c["passed"] == (c["status"] != "failed") for c in data["checks"])


def test_verify_json_marks_checks_not_done(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        [
            "attest",
            "verify",
            str(vectors / "sev-snp/virtee-sev/report_milan.hex"),
            "--vcek",
            str(vectors / "sev-snp/virtee-sev/vcek_milan.der"),
            "--chain",
            str(vectors / "amd-roots/ask_ark_milan.pem"),
            "--crl-mode",
            "if-available",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    checks = {c["id"]: c for c in json.loads(out)["checks"]}
    assert checks["snp.revocation"]["status"] == "not_checked"
    assert checks["binding.report_data"]["status"] == "not_checked"
    assert checks["snp.signature"]["status"] == "passed"


def test_verify_human_output_and_rejection(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # go-sev-guest's report is debuggable (policy 0xb0000): refused under the default policy.
    args = [
        "attest",
        "verify",
        str(vectors / "sev-snp/go-sev-guest/attestation_milan.bin"),
        "--vcek",
        str(vectors / "sev-snp/go-sev-guest/vcek_milan.der"),
        "--trust-dir",
        str(vectors / "amd-roots"),
        "--at",
        "2025-01-01",
        "--crl-mode",
        "if-available",  # the only Milan CRL expired on 2023-05-09
    ]
    code, out, err = run(args, capsys)
    assert code == 1
    assert 'revocation       crl = "if-available" (from --crl-mode): NOT CHECKED' in out
    assert "✗ snp.debug" in out and "✔ snp.signature" in out
    # A check that was not done has its own mark, never ✔.
    assert "– snp.revocation" in out and "– binding.report_data" in out
    assert "✔ snp.revocation" not in out and "✔ binding.report_data" not in out
    assert "REJECTED at snp.debug" in out
    assert err.startswith("donjon: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_verify_hex_report_with_chain_file(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        [
            "attest",
            "verify",
            str(vectors / "sev-snp/virtee-sev/report_milan.hex"),
            "--vcek",
            str(vectors / "sev-snp/virtee-sev/vcek_milan.der"),
            "--chain",
            str(vectors / "amd-roots/ask_ark_milan.pem"),
            "--at",
            "2025-01-01T00:00:00Z",
            "--crl-mode",
            "if-available",  # no CRL given at all
        ],
        capsys,
    )
    assert code == 0
    assert "hex SNP report" in out and "ACCEPTED (revocation NOT checked)" in out
    assert "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d" in out


def _virtee(vectors: Path, *extra: str) -> list[str]:
    return [
        "attest",
        "verify",
        str(vectors / "sev-snp/virtee-sev/report_milan.hex"),
        "--vcek",
        str(vectors / "sev-snp/virtee-sev/vcek_milan.der"),
        "--chain",
        str(vectors / "amd-roots/ask_ark_milan.pem"),
        *extra,
    ]


def test_verify_requires_a_current_crl_by_default(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crl = str(vectors / "amd-roots/crl_milan_2022-05-09.der")  # 2022-05-09..2023-05-09
    code, out, err = run(_virtee(vectors, "--crl", crl, "--at", "2025-01-01"), capsys)
    assert code == 1
    assert 'crl = "require" (from policy <default policy>)' in out
    assert "REJECTED at snp.crl (crl.stale)" in out
    lines = err.splitlines()
    assert lines[0].startswith("donjon: error: no current CRL of ARK-Milan")
    assert "2023-05-09T23:00:00+00:00" in lines[0]
    assert lines[1].startswith("donjon: hint: ") and "kdsintf.amd.com/vcek/v1/Milan/crl" in lines[1]
    code, out, _ = run(_virtee(vectors, "--at", "2025-01-01", "--json"), capsys)
    data = json.loads(out)
    assert code == 1 and data["error"]["code"] == "crl.missing"
    assert data["revocation"] == {"crl_mode": "require", "checked": None, "crl_mode_from": "policy"}
    # Inside the CRL's window (and the VCEK's, from 2023-04-03) it is checked and accepted.
    code, out, _ = run(_virtee(vectors, "--crl", crl, "--at", "2023-04-10", "--json"), capsys)
    data = json.loads(out)
    assert code == 0 and data["revocation"]["checked"] is True
    assert data["result"]["advisories"] == []


def test_crl_mode_flag_overrides_the_policy(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[snp]\naccept_any_workload = true\ncrl = "if-available"\n')
    code, out, _ = run(_virtee(vectors, "--policy", str(lenient), "--at", "2025-01-01"), capsys)
    assert code == 0 and f'crl = "if-available" (from policy {lenient})' in out
    args = _virtee(vectors, "--policy", str(lenient), "--at", "2025-01-01", "--json")
    code, out, _ = run([*args, "--crl-mode", "require"], capsys)
    data = json.loads(out)
    assert code == 1 and data["error"]["code"] == "crl.missing"
    assert data["revocation"]["crl_mode"] == "require"
    assert data["revocation"]["crl_mode_from"] == "flag"
    code, _, err = run([*args, "--crl-mode", "if-available", "--require-crl"], capsys)
    assert code == 2 and "--require-crl" in err


def test_show_report_and_csr(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["attest", "show", str(vectors / "sev-snp/teekit-gcp/sev-gcp.bin"), "--json"], capsys
    )
    assert code == 0
    data = json.loads(out)
    assert data["report"]["version"] == 5 and data["report"]["product"] == "Milan"
    assert data["report"]["current_mit_vector"] == "0xb"
    code, out, _ = run(["attest", "show", str(vectors / STEWARD)], capsys)
    assert code == 0
    assert "Enarx SNP CSR" in out and "ff717ae719840c93" in out


@pytest.mark.parametrize("content", [b"", b"hello", b"\x30\x82\x01", bytes(1183)])
def test_unrecognised_input_is_a_one_line_error(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "junk.bin"
    path.write_bytes(content)
    for command in ("show", "verify"):
        code, _, err = run(["attest", command, str(path)], capsys)
        assert code == 2
        assert err.count("\n") == 1 and "junk.bin" in err


def test_bad_policy_and_time(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("[snp]\nbogus = 1\n")
    report = str(vectors / "sev-snp/go-sev-guest/attestation_milan.bin")
    code, _, err = run(["attest", "verify", report, "--policy", str(bad)], capsys)
    assert code != 0 and "[snp] bogus" in err and err.count("\n") == 1
    code, _, err = run(["attest", "verify", report, "--at", "yesterday"], capsys)
    assert code == 2 and "--at" in err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("verify", "show"):
        code, out, _ = run(["attest", command, "--help"], capsys)
        assert code == 0
        assert "Examples:" in out and "donjon attest" in out
