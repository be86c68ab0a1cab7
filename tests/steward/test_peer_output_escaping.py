"""Strings from a certificate, a CSR or evidence are printed escaped: they cannot forge lines.

The attack (issue #9, 4c): a Keep's CSR names its package ``"hello\\n  ✔ revocation:
not in the Steward's current CRL"``; the Steward copies that name into the
certificate, and ``donjon verify-peer`` printed it as is, so the reader saw a
``✔`` line the peer wrote. Every printer of such strings must keep each value on
its own line, visibly escaped. Also here: ``--expect-measurement``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from steward_fakes import FakePolicy, FakeVerdict, make_csr, make_key
from test_steward_peer import KeepServer
from test_steward_peer_cli import run as verify_peer

from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.cli.main import main
from donjon.steward.ca import CertificateAuthority
from donjon.steward.issue import issue_certificate
from donjon.steward.store import AuditStore, CertificateRecord

NOW = datetime.now(UTC)
FORGED = "  ✔ revocation: not in the Steward's current CRL"
EVIL_NAME = f"hello\n{FORGED}\n\x1b[2Jdone\u202e"
MEASUREMENT = bytes(range(48))


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(curve="p256", now=NOW)


def leaf_for(ca: CertificateAuthority, key: ec.EllipticCurvePrivateKey, **changes: object) -> bytes:
    """A certificate as the Steward issues it for a CSR whose claims name ``EVIL_NAME``."""
    claims = WorkloadClaims(bytes.fromhex("5f" * 32), b"", EVIL_NAME)
    fields: dict[str, object] = {
        "platform": "snp",
        "product": "Milan",
        "measurement": MEASUREMENT,
        "tcb": "bl=3 tee=0 snp=8 ucode=115",
        "tcb_status": "UpToDate",
        "advisories": (),
        "debug": False,
        "development": False,
        "policy_id": "cd" * 32,
        "evaluated_at": NOW,
        "workload": claims,
        **changes,
    }
    result = AttestationResult(**fields)  # type: ignore[arg-type]
    csr = x509.load_der_x509_csr(make_csr(key, claims=claims))
    verdict = FakeVerdict(True, (), None, None, "snp", result, "ee" * 32, None, csr)
    cert = issue_certificate(ca, verdict, FakePolicy(), now=NOW).certificate
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def peer(ca: CertificateAuthority, tmp_path: Path) -> Iterator[KeepServer]:
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem)
    key = make_key(ec.SECP384R1())
    server = KeepServer(leaf_for(ca, key), key, tmp_path)
    yield server
    server.close()


def test_verify_peer_prints_a_forged_package_name_on_one_escaped_line(
    peer: KeepServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = verify_peer(capsys, tmp_path, peer.port)
    assert code == 0
    lines = out.splitlines()
    assert FORGED not in lines  # the peer did not get a line of its own
    assert not any(line.lstrip().startswith("✔ revocation") for line in lines)
    [workload] = [line for line in lines if line.startswith("  workload:")]
    assert workload == (
        "  workload:    hello\\n  ✔ revocation: not in the Steward's current CRL\\n"
        "\\x1b[2Jdone\\u202e sha256:" + "5f" * 32
    )
    assert "\x1b" not in out and "\u202e" not in out
    # JSON keeps the exact value: json.dumps escapes control characters itself.
    code, out, _ = verify_peer(capsys, tmp_path, peer.port, "--json")
    assert json.loads(out)["workload"]["package_name"] == EVIL_NAME
    assert "\n  ✔" not in out


def test_a_refusal_quoting_a_forged_advisory_is_one_line(
    ca: CertificateAuthority, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem)
    key = make_key(ec.SECP384R1())
    advisory = "x\ndonjon: peer accepted"
    server = KeepServer(leaf_for(ca, key, advisories=(advisory,)), key, tmp_path)
    try:
        code, out, err = verify_peer(capsys, tmp_path, server.port)
    finally:
        server.close()
    assert (code, out) == (1, "")
    error, hint = err.splitlines()
    assert error == (
        "donjon: error: peer certificate carries advisory x\\ndonjon: peer accepted, "
        "not accepted (allowed: none)"
    )
    assert hint.startswith("donjon: hint: ")


def test_expect_measurement(
    peer: KeepServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = verify_peer(
        capsys, tmp_path, peer.port, "--expect-measurement", MEASUREMENT.hex(), "--json"
    )
    doc = json.loads(out)
    assert (code, doc["accepted"], doc["measurement"]) == (0, True, MEASUREMENT.hex())
    assert {"id": "measurement", "passed": True, "skipped": False, "reason": MEASUREMENT.hex()} in (
        doc["checks"]
    )
    other = bytes(48).hex()
    code, out, _ = verify_peer(capsys, tmp_path, peer.port, "--expect-measurement", other, "--json")
    assert code == 1
    assert json.loads(out) == {
        "accepted": False,
        "code": "peer.measurement",
        "error": f"peer measurement {MEASUREMENT.hex()}, expected {other}",
    }
    code, out, err = verify_peer(capsys, tmp_path, peer.port, "--expect-measurement", other)
    assert (code, out) == (1, "")
    assert err == f"donjon: error: peer measurement {MEASUREMENT.hex()}, expected {other}\n"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("zz", "--expect-measurement 'zz' is not hex"),
        ("ab" * 20, "--expect-measurement must be 32, 48 or 64 bytes"),
    ],
)
def test_a_bad_expect_measurement_is_a_usage_error(
    peer: KeepServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    code, _, err = verify_peer(capsys, tmp_path, peer.port, "--expect-measurement", value)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_steward_certs_list_and_show_escape_what_the_csr_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    record = CertificateRecord(
        serial="a1b",
        issued_at=NOW,
        not_before=NOW,
        not_after=NOW,
        subject_key_sha256="00" * 32,
        platform="snp",
        development=False,
        workload_sha256="5f" * 32,
        claims={"package_name": EVIL_NAME},
        verdict={"checks": [{"id": "claims", "passed": True, "reason": f"package {EVIL_NAME}"}]},
        evidence_sha256="ee" * 32,
        policy_digest="ab" * 32,
        certificate_der=b"\x30\x00",
    )
    store.record_issued([record])
    store.close()
    for args in (["list"], ["show", "a1b"]):
        code = 0
        try:
            main(["steward", "certs", *args, "--dir", str(tmp_path)])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        assert code == 0, err
        assert FORGED not in out.splitlines()
        assert "\x1b" not in out and "\u202e" not in out
    assert "  ✔ claims: package hello\\n  ✔ revocation" in out
