"""``donjon steward`` commands: init, certs list/show/revoke, and serve's refusals."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from steward_fakes import CLAIMS, FakePolicy, FakeVerifier, make_csr

from donjon.cli.main import main
from donjon.steward.ca import CertificateAuthority
from donjon.steward.service import Steward
from donjon.steward.store import AuditStore


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_init_creates_a_private_key_and_refuses_to_clobber(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        ["steward", "init", "--dir", str(tmp_path), "--curve", "p256", "--json"], capsys
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["curve"] == "p256"
    assert os.stat(tmp_path / "ca.key").st_mode & 0o777 == 0o600
    ca = CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert ca.key.curve.name == "secp256r1"
    code, _, err = _run(["steward", "init", "--dir", str(tmp_path)], capsys)
    assert code == 2
    assert err.startswith("donjon: error: a CA already exists")


def test_init_creates_the_state_directory_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The documented start: `steward init --dir ./steward`, then `serve --dir ./steward`,
    # which keeps an existing directory as it is. init made it with the umask's mode
    # (0755), so the state directory (CA key, audit store, collateral) was others' to list.
    state = tmp_path / "steward"
    code, _, _ = _run(["steward", "init", "--dir", str(state)], capsys)
    assert code == 0
    assert os.stat(state).st_mode & 0o777 == 0o700
    assert os.stat(state / "ca.key").st_mode & 0o777 == 0o600


def _issue_two(state: Path) -> tuple[str, str]:
    ca = CertificateAuthority.create(now=datetime.now(UTC))
    store = AuditStore.open(f"sqlite:///{state / 'audit.db'}")
    steward = Steward(
        ca=ca,
        policy=FakePolicy(),
        trust=None,
        store=store,
        verifier=FakeVerifier(),
        clock=lambda: datetime.now(UTC),
    )
    issued = steward.attest([make_csr(claims=CLAIMS), make_csr()]).issued
    store.close()
    return issued[0].serial_hex, issued[1].serial_hex


def test_certs_list_show_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _issue_two(tmp_path)
    code, out, _ = _run(["steward", "certs", "list", "--dir", str(tmp_path), "--json"], capsys)
    assert code == 0
    assert {d["serial"] for d in json.loads(out)} == {first, second}
    code, out, _ = _run(
        ["steward", "certs", "show", first, "--dir", str(tmp_path), "--json"], capsys
    )
    doc = json.loads(out)
    assert doc["workload_sha256"] == "5f" * 32
    assert doc["verdict"]["accepted"] is True
    code, out, _ = _run(
        ["steward", "certs", "revoke", first, "--reason", "superseded", "--dir", str(tmp_path)],
        capsys,
    )
    assert code == 0 and out.startswith(f"revoked {first}")
    code, out, _ = _run(
        ["steward", "certs", "list", "--revoked", "--dir", str(tmp_path), "--json"], capsys
    )
    assert [d["serial"] for d in json.loads(out)] == [first]
    code, out, _ = _run(["steward", "certs", "list", "--active", "--dir", str(tmp_path)], capsys)
    assert second in out and first not in out


def test_certs_show_unknown_serial_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _issue_two(tmp_path)
    code, _, err = _run(["steward", "certs", "show", "abc", "--dir", str(tmp_path)], capsys)
    assert code != 0
    assert err.strip() == "donjon: error: no certificate with serial abc in the audit store"


def test_certs_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["steward", "certs", "list", "--dir", str(tmp_path / "none")], capsys)
    assert code == 2
    assert "no audit store" in err


def test_serve_refuses_plain_http_without_dev(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[snp]\naccept_any_workload = true\n")
    code, _, err = _run(
        [
            "steward",
            "serve",
            "--dir",
            str(tmp_path),
            "--init",
            "--policy",
            str(policy),
            "--port",
            "0",
        ],
        capsys,
    )
    assert code == 2
    assert "refusing to serve plain HTTP" in err


def test_serve_refuses_a_nil_policy_without_dev(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[nil]\nallow = true\n")
    code, _, err = _run(
        ["steward", "serve", "--dir", str(tmp_path), "--init", "--policy", str(policy)], capsys
    )
    assert code == 2
    assert "non-TEE platforms (nil)" in err


def test_serve_rejects_a_bad_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["steward", "serve", "--dir", str(tmp_path), "--now", "yesterday"], capsys)
    assert code == 2
    assert "--now 'yesterday' is not an ISO 8601 time" in err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["steward", "--help"], ["steward", "serve", "--help"], ["verify-peer", "--help"]):
        code, out, _ = _run(argv, capsys)
        assert code == 0
        assert "Example" in out
