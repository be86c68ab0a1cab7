"""``donjon package keygen``, and signer keys that are refused before any registry is asked."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

REF = "oci://127.0.0.1:1/team/app@sha256:" + "ab" * 32  # nothing listens: never reached


def donjon(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", *args],
        capture_output=True, text=True, cwd=cwd, env=dict(os.environ), timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        ("ecdsa-p256-sha256", ec.EllipticCurvePrivateKey),
        ("ecdsa-p384-sha384", ec.EllipticCurvePrivateKey),
        ("ed25519", ed25519.Ed25519PrivateKey),
    ],
)
def test_keygen_writes_a_0600_private_key_and_its_public_key(
    tmp_path: Path, algorithm: str, kind: type
) -> None:
    made = donjon("package", "keygen", "team.key", "--algorithm", algorithm, "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert (tmp_path / "team.key").stat().st_mode & 0o777 == 0o600
    private = serialization.load_pem_private_key((tmp_path / "team.key").read_bytes(), None)
    assert isinstance(private, kind)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        assert private.curve.name == {"ecdsa-p256-sha256": "secp256r1"}.get(algorithm, "secp384r1")
    public = serialization.load_pem_public_key((tmp_path / "team.key.pub").read_bytes())
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert doc["key_id"] == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert doc["algorithm"] == algorithm


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    (tmp_path / "team.key").write_text("precious")
    again = donjon("package", "keygen", "team.key", cwd=tmp_path)
    assert again.returncode != 0
    assert again.stderr == (
        "donjon: error: team.key: already exists; a signer key is never overwritten\n"
    )
    assert (tmp_path / "team.key").read_text() == "precious"


def test_an_rsa_key_and_a_p521_key_are_refused_in_one_line(tmp_path: Path) -> None:
    for name, key in (
        ("rsa.key", rsa.generate_private_key(65537, 2048)),
        ("p521.key", ec.generate_private_key(ec.SECP521R1())),
    ):
        (tmp_path / name).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    signed = donjon("package", "sign", REF, "--key", "rsa.key", cwd=tmp_path)
    assert signed.returncode != 0
    assert signed.stderr == (
        "donjon: error: rsa.key: RSA keys are not signer keys (ECDSA P-256/P-384 or Ed25519)\n"
    )
    signed = donjon("package", "sign", REF, "--key", "p521.key", cwd=tmp_path)
    assert signed.stderr == "donjon: error: p521.key: ECDSA curve secp521r1 is not P-256 or P-384\n"
    verified = donjon("package", "verify", REF, "--signer", "rsa.key", cwd=tmp_path)
    assert verified.stderr == "donjon: error: rsa.key: not a PEM public key\n"
