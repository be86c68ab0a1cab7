"""The CA key on a PKCS#11 token (SoftHSM2): init, issue, revoke, and a CRL signed on the token.

SoftHSM2 reads ``$SOFTHSM2_CONF`` and its token list once per process, when the
module is first loaded, so one token serves the whole session and each test
makes its own key on it (a new object label). The ordinary verifier is
``openssl`` (and ``cryptography``).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from steward_fakes import CLAIMS, make_csr
from steward_harness import StewardFactory

from donjon.cli.main import main
from donjon.errors import UsageError
from donjon.steward import wire
from donjon.steward.ca import CertificateAuthority
from donjon.steward.errors import CAError
from donjon.steward.pkcs11uri import parse_pkcs11_uri

PIN = "246813"
TOKEN = "donjon-test"


def _module() -> str | None:
    for pattern in ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/*/softhsm/libsofthsm2.so"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(module path, PIN file) with SOFTHSM2_CONF pointing at a private token directory."""
    pytest.importorskip("pkcs11", reason="python-pkcs11 is not installed (pip install donjon[hsm])")
    module = _module()
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        pytest.skip("SoftHSM2 is not installed (Debian softhsm2, scripts/install-system-deps)")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin_file = base / "pin"
    pin_file.write_text(PIN + "\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "13579135"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        yield module, pin_file
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


def _new_key_uri(softhsm: tuple[str, Path]) -> str:
    """The URI of a key (not yet created) with a label of its own on the session's token."""
    module, pin_file = softhsm
    label = f"ca-{uuid.uuid4().hex[:10]}"
    return f"pkcs11:token={TOKEN};object={label}?module-path={module}&pin-source=file:{pin_file}"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# --- the URI --------------------------------------------------------------------------------


def test_uri_attributes_and_percent_encoding() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=My%20Token;object=ca;type=private;id=%01%02;slot-id=7"
        "?module-path=/usr/lib/x.so&pin-value=1234"
    )
    assert (uri.token, uri.object, uri.type, uri.id, uri.slot_id) == (
        "My Token", "ca", "private", b"\x01\x02", 7,
    )  # fmt: skip
    assert uri.module_path == "/usr/lib/x.so" and uri.pin() == "1234"
    assert "1234" not in uri.redacted and "pin-value=***" in uri.redacted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file:/x", "is not a PKCS#11 URI"),
        ("pkcs11:token=a", "names no key"),
        ("pkcs11:object=a;object=b", "appears twice"),
        ("pkcs11:object=a;library-manufacturer=x", "'library-manufacturer' is not supported"),
        ("pkcs11:object=a?x-vendor=1", "'x-vendor' is not supported"),
        ("pkcs11:object=a;type=secret", "not an RFC 7512 type"),
        ("pkcs11:object=a b", "percent-encode"),
        ("pkcs11:object=a;slot-id=x", "not a decimal number"),
        ("pkcs11:object", "is not name=value"),
    ],
)
def test_bad_uris_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_pkcs11_uri(text)


def test_no_module_and_no_pin_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DONJON_PKCS11_MODULE", raising=False)
    monkeypatch.delenv("DONJON_PKCS11_PIN", raising=False)
    uri = parse_pkcs11_uri("pkcs11:object=ca")
    with pytest.raises(UsageError, match="no PKCS#11 module"):
        uri.module()
    with pytest.raises(UsageError, match="no PIN"):
        uri.pin()


# --- on SoftHSM2 ----------------------------------------------------------------------------


def test_init_creates_a_non_extractable_key_on_the_token(
    softhsm: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    uri_text = _new_key_uri(softhsm)
    code, out, err = _run(
        ["steward", "init", "--dir", str(tmp_path), "--pkcs11", uri_text, "--json"], capsys
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["key"].startswith("pkcs11:") and not (tmp_path / "ca.key").exists()
    cert = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(cert)  # self-signed through the token
    uri = parse_pkcs11_uri(uri_text)
    token = pkcs11.lib(softhsm[0]).get_token(token_label=uri.token)
    with token.open(user_pin=PIN) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=uri.object)
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[Attribute.VALUE]
    ca = CertificateAuthority.load(tmp_path / "ca.pem", uri_text)
    assert ca.on_token and isinstance(ca.key, ec.EllipticCurvePrivateKey)
    with pytest.raises(TypeError, match="stays on the token"):
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    # A second init on the same label never replaces (or deletes) the token's key.
    code, _, err = _run(
        ["steward", "init", "--dir", str(tmp_path / "again"), "--pkcs11", uri_text], capsys
    )
    assert code == 2 and f"already holds an object labelled {uri.object!r}" in err


def test_a_wrong_pin_or_missing_key_is_one_line(
    softhsm: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri_text = _new_key_uri(softhsm)
    assert _run(["steward", "init", "--dir", str(tmp_path), "--pkcs11", uri_text], capsys)[0] == 0
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("000000")
    bad_pin = uri_text.split("&pin-source=")[0] + f"&pin-source=file:{wrong}"
    policy = tmp_path / "p.toml"
    policy.write_text("[nil]\nallow = true\n")
    # A fresh process, as an operator starts it (PKCS#11 logins are per process).
    done = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dir", str(tmp_path),
         "--ca-key", bad_pin, "--dev", "--policy", str(policy), "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("donjon: error: the PKCS#11 PIN for token 'donjon-test' is wrong")
    )
    with pytest.raises(CAError, match="no EC private and public key pair"):
        CertificateAuthority.load(tmp_path / "ca.pem", uri_text.replace("object=ca-", "object=no-"))


def test_issue_revoke_and_a_token_signed_crl_that_openssl_accepts(
    softhsm: tuple[str, Path],
    tmp_path: Path,
    start_steward: StewardFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri_text = _new_key_uri(softhsm)
    assert _run(["steward", "init", "--dir", str(tmp_path), "--pkcs11", uri_text], capsys)[0] == 0
    ca = CertificateAuthority.load(tmp_path / "ca.pem", uri_text)
    s = start_steward(ca=ca)
    answer = s.client.post(
        "/", content=make_csr(claims=CLAIMS), headers={"Content-Type": "application/pkcs10"}
    )
    assert answer.status_code == 200, answer.text
    leaf = x509.load_der_x509_certificate(wire.split_sequence(answer.content, "answer")[1])
    leaf.verify_directly_issued_by(ca.certificate)
    revoked = s.client.post(
        "/v1/revoke",
        json={"serial": format(leaf.serial_number, "x"), "reason": "key-compromise"},
        headers={"Authorization": "Bearer s3cret-token"},
    )
    assert revoked.status_code == 200, revoked.text
    crl_pem = s.client.get("/v1/crl", params={"format": "pem"}).content
    crl = x509.load_pem_x509_crl(crl_pem)
    assert crl.is_signature_valid(ca.certificate.public_key())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (scripts/install-system-deps)")
    (tmp_path / "crl.pem").write_bytes(crl_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    check = subprocess.run(
        [openssl, "crl", "-in", str(tmp_path / "crl.pem"), "-CAfile", str(tmp_path / "ca.pem"),
         "-noout"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0 and "verify OK" in check.stderr + check.stdout, check.stderr
    verify = subprocess.run(
        [openssl, "verify", "-crl_check", "-CAfile", str(tmp_path / "ca.pem"),
         "-CRLfile", str(tmp_path / "crl.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr
    # Tamper with the token-signed CRL: openssl must refuse it.
    der = bytearray(crl.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    (tmp_path / "bad.crl").write_bytes(bytes(der))
    bad = subprocess.run(
        [openssl, "crl", "-inform", "DER", "-in", str(tmp_path / "bad.crl"),
         "-CAfile", str(tmp_path / "ca.pem"), "-noout"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "verify OK" not in bad.stderr + bad.stdout
