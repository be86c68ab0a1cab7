"""``donjon attest show|verify`` on CCA tokens, Nitro documents and RA-TLS certificates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from test_attest_cli import run

TOKEN = "cca/trustee/cca-example-token.cbor"
CPAK_JWK = "cca/trustee/cpak-pub.json"
NITRO_CERT = "nitro/evervault/non-debug-cert-containing-attestation-document-18-1-23.pem"


def test_show_cca_json_prints_every_claim_in_hex(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["attest", "show", str(vectors / TOKEN), "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["platform"] == "cca"
    platform = doc["token"]["platform"]["claims"]
    realm = doc["token"]["realm"]["claims"]
    assert platform["config"] == "cfcfcfcf"
    assert platform["sw_components"][8]["type"] == "RMM"
    assert realm["personalization_value"] == "00" * 64
    assert realm["public_key"].startswith("0476f988091be585")


def test_verify_cca_with_cpak_jwk_and_pem(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["attest", "verify", str(vectors / TOKEN), "--cpak", str(vectors / CPAK_JWK), "--json"],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["accepted"] is True
    other = tmp_path / "other.pem"
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    other.write_bytes(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    code, out, err = run(["attest", "verify", str(vectors / TOKEN), "--cpak", str(other)], capsys)
    assert code != 0
    assert "REJECTED at cca.platform_signature" in out
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_cpak_file_is_one_line(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "cpak.json"
    bad.write_text('{"kty": "RSA"}')
    code, _, err = run(["attest", "verify", str(vectors / TOKEN), "--cpak", str(bad)], capsys)
    assert code == 2
    assert "--cpak" in err and "kty" in err and "Traceback" not in err


def test_verify_ratls_certificate(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["attest", "verify", str(vectors / NITRO_CERT), "--trust-dir", str(vectors / "nitro"),
         "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, out
    verdict = json.loads(out)
    assert verdict["platform"] == "nitro"
    assert verdict["form"] == "RA-TLS certificate carrying a Nitro document"
    assert verdict["result"]["advisories"] == ["hypervisor-trusted", "revocation-not-checked"]
    code, out, _ = run(
        ["attest", "verify", str(vectors / NITRO_CERT), "--trust-dir", str(vectors / "nitro"),
         "--at", "2023-01-18T17:00Z"],
        capsys,
    )  # fmt: skip
    assert code != 0 and "REJECTED at nitro.validity" in out


def test_show_nitro_document_json(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "attest",
            "show",
            str(vectors / "nitro/evervault/debug-mode-attestation-doc.cose"),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    doc = json.loads(out)["document"]
    assert doc["user_data"] == "68656c6c6f2c20776f726c6421"  # "hello, world!"
    assert doc["pcrs"]["0"] == "00" * 48
