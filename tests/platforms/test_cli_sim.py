"""``donjon sim``: the commands a developer types, their JSON and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from donjon.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_show_json_matches_the_files(
    capsys: pytest.CaptureFixture[str], sim_state_dir: Path, chip_id: bytes
) -> None:
    code, out, _ = run(capsys, "sim", "show", "--json", "--state-dir", str(sim_state_dir))
    assert code == 0
    info = json.loads(out)
    ark = x509.load_pem_x509_certificate((sim_state_dir / "sim" / "ark.pem").read_bytes())
    assert info["ark_sha256"] == ark.fingerprint(hashes.SHA256()).hex()
    assert info["chip_id"] == chip_id.hex()
    assert info["tcb"] == {"bl": 3, "tee": 0, "snp": 20, "ucode": 209}
    assert info["debug"] is False and info["policy"] == "0x30000"
    assert info["steward_policy"] == f'[sim]\ntrust = "{sim_state_dir / "sim" / "ark.pem"}"'


def test_show_text_says_it_is_not_a_tee(
    capsys: pytest.CaptureFixture[str], sim_state_dir: Path
) -> None:
    code, out, _ = run(capsys, "sim", "show", "--state-dir", str(sim_state_dir))
    assert code == 0 and "NOT a hardware TEE" in out and "[sim]" in out


def test_state_dir_from_environment(
    capsys: pytest.CaptureFixture[str], sim_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DONJON_STATE_DIR", str(sim_state_dir))
    code, out, _ = run(capsys, "sim", "show", "--json")
    assert code == 0 and json.loads(out)["directory"] == str(sim_state_dir / "sim")


def test_tcb_command_reissues(capsys: pytest.CaptureFixture[str], sim_state_dir: Path) -> None:
    code, out, _ = run(
        capsys, "sim", "tcb", "ucode=230", "--json", "--state-dir", str(sim_state_dir)
    )
    assert code == 0
    assert json.loads(out)["tcb"] == {"bl": 3, "tee": 0, "snp": 20, "ucode": 230}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sim", "show"], 1, "not initialised"),
        (["sim", "init", "--product", "Naples"], 2, "unknown AMD product line 'Naples'"),
        (["sim", "init", "--tcb", "bl=999"], 2, "TCB bl=999 is out of range 0..255"),
        (["sim", "init", "--tcb", "fmc=1"], 2, "fmc is a Turin SPL"),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    got, _, err = run(capsys, *args, "--state-dir", str(tmp_path))
    assert got == code
    assert message in err and err.count("donjon: error:") == 1 and "Traceback" not in err
    assert not (tmp_path / "sim").exists()


def test_init_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], sim_state_dir: Path) -> None:
    before = (sim_state_dir / "sim" / "ark.pem").read_bytes()
    code, _, err = run(capsys, "sim", "init", "--state-dir", str(sim_state_dir))
    assert code == 1 and "already exists" in err and "generating" not in err
    assert (sim_state_dir / "sim" / "ark.pem").read_bytes() == before


@pytest.mark.slow
def test_init_turin_then_reset(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys,
        "sim",
        "init",
        "--product",
        "Turin",
        "--report-version",
        "5",
        "--debug",
        "--json",
        "--state-dir",
        str(tmp_path),
    )
    assert code == 0
    info = json.loads(out)
    assert info["product"] == "Turin" and info["debug"] is True and info["policy"] == "0xb0000"
    assert info["chip_id"][16:] == "00" * 56  # Turin: 8 significant bytes of CHIP_ID
    code, out, _ = run(capsys, "sim", "reset", "--json", "--state-dir", str(tmp_path))
    assert code == 0 and json.loads(out)["removed"] is True
    assert not (tmp_path / "sim").exists()


def test_tdx_product_init_show_reset(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = str(tmp_path)
    code, out, err = run(
        capsys, "sim", "init", "--tee", "tdx", "--debug", "--tcb-status", "OutOfDate",
        "--json", "--state-dir", state,
    )  # fmt: skip
    assert code == 0, err
    info = json.loads(out)
    assert info["tee"] == "tdx" and info["debug"] is True and info["tcb_status"] == "OutOfDate"
    assert info["td_attributes"] == "0x0000000010000001"  # SEPT_VE_DISABLE | DEBUG
    root = x509.load_pem_x509_certificate((tmp_path / "sim" / "tdx-root.pem").read_bytes())
    assert info["root_sha256"] == root.fingerprint(hashes.SHA256()).hex()
    assert "(not Intel)" in root.subject.rfc4514_string()
    assert info["steward_policy"] == f'[sim.tdx]\ntrust = "{tmp_path / "sim" / "tdx-root.pem"}"'
    code, out, _ = run(capsys, "sim", "show", "--state-dir", state)
    assert code == 0 and "Intel TDX" in out and "NOT a hardware TEE" in out
    code, _, err = run(capsys, "sim", "init", "--state-dir", state)
    assert code == 1 and "already exists" in err and "generating" not in err
    code, _, err = run(capsys, "sim", "tcb", "ucode=9", "--state-dir", state)
    assert code == 2 and "moves the SNP product" in err
    code, out, _ = run(capsys, "sim", "reset", "--json", "--state-dir", state)
    assert code == 0 and json.loads(out)["removed"] is True
    assert not (tmp_path / "sim").exists()


def test_tdx_refuses_snp_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "sim", "init", "--tee", "tdx", "--product", "Genoa", "--state-dir", str(tmp_path)
    )
    assert code == 2 and "SNP options" in err
    code, _, err = run(
        capsys, "sim", "init", "--tcb-status", "OutOfDate", "--state-dir", str(tmp_path)
    )
    assert code == 2 and "TDX option" in err
    assert not (tmp_path / "sim").exists()
