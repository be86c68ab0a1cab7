"""``donjon attest show|verify`` on SGX and TDX quotes (raw, hex, base64) and Enarx SGX CSRs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from dcap_support import dcap_vectors

from donjon.cli.main import main

PHALA_TDX = "tdx/phala-dcap-qvl/tdx_quote.dat"
PHALA_TDX_COLLATERAL = "tdx/phala-dcap-qvl/tdx_quote_collateral.json"
ENARX_SGX = "enarx-steward/sgx_icelake.signed.tcb.crl.single.i5.csr"
HEX = re.compile(r"^[0-9a-f]*$")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _hex_strings(value: Any) -> list[str]:
    """Every string that looks like bytes (even length, only hex digits) in a JSON tree."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _hex_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _hex_strings(v)]
    if isinstance(value, str) and len(value) >= 8 and re.fullmatch(r"[0-9a-fA-F]+", value):
        return [value]
    return []


def test_show_every_quote_as_json(
    vectors: Path, expected: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for vector in dcap_vectors(expected):
        code, out, err = run(
            ["attest", "show", str(vectors / vector["evidence"]), "--json"], capsys
        )
        assert code == 0, (vector["id"], err)
        doc = json.loads(out)
        assert doc["platform"] == vector["platform"]
        body = vector["computed"]["parsed"]["body"]
        assert doc["quote"]["body"]["report_data"] == body["report_data"]
        assert all(HEX.match(s) for s in _hex_strings(doc)), vector["id"]  # lowercase hex


def test_show_hex_form(tmp_path: Path, vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hexed = tmp_path / "quote.hex"
    hexed.write_text((vectors / PHALA_TDX).read_bytes().hex())
    code, out, _ = run(["attest", "show", str(hexed), "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["form"] == "hex TDX quote" and doc["pck"]["fmspc"] == "b0c06f000000"


def test_verify_with_collateral_human(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["attest", "verify", str(vectors / PHALA_TDX), "--collateral",
         str(vectors / PHALA_TDX_COLLATERAL), "--at", "2025-07-01T00:00Z"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "platform tdx" in out and "UpToDate" in out
    assert "✔ dcap.tcb_status" in out and out.rstrip().endswith("ACCEPTED")


def test_verify_without_collateral_says_how_to_get_it(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        ["attest", "verify", str(vectors / PHALA_TDX), "--at", "2025-07-01"], capsys
    )
    assert code != 0
    assert "REJECTED at dcap.collateral (collateral.missing)" in out
    assert "donjon attest collateral fetch" in err and "Traceback" not in err


def test_tcb_mode_if_available_says_not_appraised(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        ["attest", "verify", str(vectors / "tdx/teekit/tdx-v4-azure.b64"), "--tcb-mode",
         "if-available", "--at", "2025-01-01"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "TCB NOT APPRAISED" in out
    assert "ACCEPTED (revocation NOT checked, TCB NOT APPRAISED)" in out
    code, out, _ = run(
        ["attest", "verify", str(vectors / "tdx/teekit/tdx-v4-azure.b64"), "--tcb-mode",
         "if-available", "--at", "2025-01-01", "--json"],
        capsys,
    )  # fmt: skip
    doc = json.loads(out)
    assert doc["result"]["tcb_status"] == "NotAppraised"
    assert "tcb-not-appraised" in doc["result"]["advisories"]


def test_enarx_sgx_csr(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["attest", "verify", str(vectors / ENARX_SGX), "--policy",
         str(vectors / "enarx-steward/steward_testdata_policy.toml"), "--trust-dir",
         str(vectors / "intel-roots"), "--at", "2023-02-01T00:00Z", "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["platform"] == "sgx" and doc["form"] == "DER CSR"
    assert doc["result"]["measurement"] == (
        "4046ea255f0455131a024e1265ac1ebd131fdbd1240f1712a00381f6f04e8c15"
    )  # enarx-steward/README.md
    code, out, _ = run(["attest", "show", str(vectors / ENARX_SGX), "--json"], capsys)
    shown = json.loads(out)
    assert shown["form"] == "Enarx SGX CSR"
    assert shown["quote"]["body"]["mrsigner"] == (
        "7a49a07df0f8e90a6e1d9a63e3c696d9c844f0e3f8739b21daa640f99facc48a"
    )
    assert len(shown["evidence_collateral"]["crls"]) == 3


def test_unreadable_collateral_file_is_a_usage_error(
    tmp_path: Path, vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("{}")
    code, _, err = run(
        ["attest", "verify", str(vectors / PHALA_TDX), "--collateral", str(bad)], capsys
    )
    assert code == 2 and "--collateral" in err and "missing" in err
