"""``donjon verify-peer`` against a TLS 1.3 server presenting a Steward-issued certificate:
the advisory and TCB-status options, and revocation shown as not checked without --crl."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from steward_fakes import issue_snp_leaf, make_key
from test_steward_peer import KeepServer

from donjon.attestation import packagesig
from donjon.attestation.claims import REVOCATION_NOT_CHECKED, WorkloadClaims
from donjon.cli.main import main
from donjon.steward.ca import CertificateAuthority
from donjon.steward.crl import build_crl

NOW = datetime.now(UTC)

Serve = Callable[..., KeepServer]


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(curve="p256", now=NOW)


@pytest.fixture
def serve(ca: CertificateAuthority, tmp_path: Path) -> Iterator[Serve]:
    """Start a server whose certificate the Steward issued for these AttestationResult fields."""
    servers: list[KeepServer] = []
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem)

    def start(**changes: object) -> KeepServer:
        key = make_key(ec.SECP384R1())
        leaf = issue_snp_leaf(ca, now=NOW, key=key, **changes)
        directory = tmp_path / f"keep{len(servers)}"
        directory.mkdir()
        server = KeepServer(leaf.public_bytes(serialization.Encoding.PEM), key, directory)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, port: int, *args: str
) -> tuple[int, str, str]:
    code = 0
    try:
        main(["verify-peer", f"127.0.0.1:{port}", "--ca", str(tmp_path / "ca.pem"), *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_without_crl_the_json_says_revocation_was_not_checked(
    serve: Serve, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve()
    code, out, _ = run(capsys, tmp_path, server.port, "--json")
    doc = json.loads(out)
    assert (code, doc["accepted"]) == (0, True)
    assert doc["revocation"] == {"checked": False, "reason": "not checked (no CRL given)"}
    revocation = [c for c in doc["checks"] if c["id"] == "revocation"]
    assert revocation == [
        {
            "id": "revocation",
            "passed": True,
            "skipped": True,
            "reason": "not checked (no CRL given)",
        }
    ]


def test_without_crl_the_text_says_not_checked(
    serve: Serve, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve()
    code, out, _ = run(capsys, tmp_path, server.port)
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert "– revocation: not checked (no CRL given)" in lines  # never ✔ for a check not done
    assert "revocation:  NOT CHECKED (no CRL given; pass --crl to check it)" in lines
    assert "advisories:  none" in lines


def test_with_a_crl_file_revocation_is_checked(
    serve: Serve, ca: CertificateAuthority, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve()
    crl_file = tmp_path / "steward.crl"
    crl_file.write_bytes(build_crl(ca, [], now=NOW).public_bytes(serialization.Encoding.DER))
    code, out, _ = run(capsys, tmp_path, server.port, "--crl", str(crl_file), "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["revocation"] == {"checked": True, "reason": "not in the Steward's current CRL"}


def test_an_advisory_is_refused_unless_allowed(
    serve: Serve, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(advisories=(REVOCATION_NOT_CHECKED,))
    code, out, _ = run(capsys, tmp_path, server.port, "--json")
    assert code == 1
    assert json.loads(out) == {
        "accepted": False,
        "code": "peer.advisory",
        "error": "peer certificate carries advisory revocation-not-checked, "
        "not accepted (allowed: none)",
    }
    code, _, err = run(capsys, tmp_path, server.port)
    assert code == 1
    assert err.splitlines()[0] == (
        "donjon: error: peer certificate carries advisory revocation-not-checked, "
        "not accepted (allowed: none)"
    )
    code, out, _ = run(
        capsys, tmp_path, server.port, "--allow-advisory", REVOCATION_NOT_CHECKED, "--json"
    )
    doc = json.loads(out)
    assert (code, doc["accepted"], doc["advisories"]) == (0, True, [REVOCATION_NOT_CHECKED])


def test_tcb_status_allow_list(
    serve: Serve, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(tcb_status="OutOfDate")
    code, out, _ = run(capsys, tmp_path, server.port, "--json")
    assert (code, json.loads(out)["code"]) == (1, "peer.tcb_status")
    code, out, _ = run(capsys, tmp_path, server.port, "--allow-tcb-status", "OutOfDate", "--json")
    assert (code, json.loads(out)["tcb_status"]) == (0, "OutOfDate")


def test_an_unknown_tcb_status_option_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca: CertificateAuthority
) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem)
    code, _, err = run(capsys, tmp_path, 9, "--allow-tcb-status", "uptodate")
    assert code == 2
    assert err.strip().splitlines() == [
        "donjon: error: --allow-tcb-status 'uptodate' is not a TCB status (known: "
        "ConfigurationAndSWHardeningNeeded, ConfigurationNeeded, MeetsMinimum, NoTEE, "
        "NotAppraised, OutOfDate, OutOfDateConfigurationNeeded, Revoked, SWHardeningNeeded, "
        "TDRelaunchAdvised, TDRelaunchAdvisedConfigurationNeeded, Unknown, UpToDate)"
    ]


# --- the package a Keep was deployed from: --expect-repository, --expect-signer ----------------

REPO = "registry.example:5000/team/app"
PACKAGE = "sha256:" + "9c" * 32


def _signed_claims(signer: ec.EllipticCurvePrivateKey) -> WorkloadClaims:
    from steward_fakes import CLAIMS

    return WorkloadClaims(
        CLAIMS.wasm_sha256,
        CLAIMS.config_sha256,
        CLAIMS.package_name,
        nonce=CLAIMS.nonce,
        package_sha256=bytes.fromhex("9c" * 32),
        package_repository=REPO,
        package_signatures=(packagesig.sign(signer, REPO, PACKAGE),),
    )


def _public(tmp_path: Path, key: ec.EllipticCurvePrivateKey, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def test_expect_repository_and_signer_accept_the_signed_package(
    serve: Serve, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer = make_key(ec.SECP256R1())
    server = serve(workload=_signed_claims(signer))
    code, out, err = run(
        capsys, tmp_path, server.port, "--expect-package", PACKAGE,
        "--expect-repository", REPO, "--expect-signer", _public(tmp_path, signer, "team.pub"),
    )  # fmt: skip
    assert code == 0, err
    lines = [line.strip() for line in out.splitlines()]
    assert f"repository:  {REPO} (1 signature claimed)" in lines
    assert any(line.startswith("✔ package_signature: signed by key sha256:") for line in lines)
    code, out, _ = run(capsys, tmp_path, server.port, "--json")
    assert json.loads(out)["workload"]["package_repository"] == REPO


@pytest.mark.parametrize(
    ("option", "code", "error"),
    [
        (("--expect-repository", "registry.example:5000/team/other"), "peer.package_repository",
         f"peer was deployed from repository {REPO}, expected registry.example:5000/team/other"),
        (("--expect-signer", "OTHER"), "peer.package_signature",
         "which is not a signer key given"),
    ],
)  # fmt: skip
def test_expect_repository_and_signer_refuse_another(
    serve: Serve,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: tuple[str, str],
    code: str,
    error: str,
) -> None:
    server = serve(workload=_signed_claims(make_key(ec.SECP256R1())))
    value = option[1]
    if value == "OTHER":
        value = _public(tmp_path, make_key(ec.SECP256R1()), "other.pub")
    status, out, _ = run(capsys, tmp_path, server.port, option[0], value, "--json")
    assert status == 1
    doc = json.loads(out)
    assert doc["code"] == code and error in doc["error"]


def test_a_bad_expect_repository_is_a_usage_error(
    serve: Serve, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve()
    status, _, err = run(capsys, tmp_path, server.port, "--expect-repository", "app")
    assert status != 0
    assert "--expect-repository: 'app' is not a repository like registry.example/team/app" in err

