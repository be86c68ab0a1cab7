"""Keeps against Donjon's real Steward (``donjon steward serve --dev``) on the nil platform.

The development policy accepts nil evidence; the Steward must say so in what
it issues, and two Keeps it certified must accept each other over mutual TLS.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.attestation.oids import ATTESTATION_RESULT, WORKLOAD_CLAIMS
from support.keepproc import make_package
from support.net import free_port, stop, wait_port
from support.pki import write_self_signed

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
#: Bearer token of the test Steward's POST /v1/revoke (the revocation tests use it).
ADMIN_TOKEN = "keep-tests-admin-token"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated SEV-SNP vendor hierarchy made by ``donjon sim init``."""
    if not (REPO / "src" / "donjon" / "cli" / "sim.py").exists():
        pytest.skip("donjon sim is not in this tree")
    state = tmp_path_factory.mktemp("state")
    proc = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "sim", "init", "--state-dir", str(state)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return state


@pytest.fixture(scope="module")
def real_steward(
    tmp_path_factory: pytest.TempPathFactory, sim_state: Path
) -> Iterator[tuple[str, Path]]:
    if not (REPO / "src" / "donjon" / "cli" / "steward.py").exists():
        pytest.skip("donjon steward is not in this tree")
    tmp = tmp_path_factory.mktemp("steward")
    cert, key = write_self_signed(tmp, cert_name="https.pem", key_name="https.key")
    ark = sim_state / "sim" / "ark.pem"
    (tmp / "dev.toml").write_text(f'[nil]\nallow = true\n\n[sim]\ntrust = "{ark}"\n')
    (tmp / "admin.token").write_text(ADMIN_TOKEN)
    (tmp / "admin.token").chmod(0o600)
    port = free_port()
    cmd = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev", "--init",
        "--dir", str(tmp / "state"), "--port", str(port), "--policy", str(tmp / "dev.toml"),
        "--tls-cert", str(cert), "--tls-key", str(key),
        "--admin-token-file", str(tmp / "admin.token"),
    ]  # fmt: skip
    log_path = tmp / "steward.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc, why=lambda: f"steward did not start: {log_path.read_text()[-500:]}")
    try:
        yield f"https://localhost:{port}/", cert
    finally:
        stop(proc)
        log.close()


def _run(pkg: Path, *args: str, platform: str = "nil") -> subprocess.Popen[str]:
    env = {**os.environ, "DONJON_PLATFORM": platform}
    return subprocess.Popen(
        [sys.executable, "-m", "donjon.cli.main", "run", str(pkg), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_keep_gets_a_development_certificate_naming_its_workload(
    tmp_path: Path, real_steward: tuple[str, Path], build_wasm: Callable[[Path], Path]
) -> None:
    url, https_ca = real_steward
    wasm = build_wasm(PROGRAMS / "client.c")
    config = f'steward = "{url}"\nsteward_ca = "{https_ca}"\n'
    pkg = make_package(tmp_path, "claims-check", wasm, config)
    cert_path = tmp_path / "keep.pem"
    proc = _run(pkg, "--export-cert", str(cert_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err  # client.c finds no "peer": it ran, after the Keep started
    assert "for platform nil: DEVELOPMENT only, no TEE attested this Keep" in err
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    result_ext = leaf.extensions.get_extension_for_oid(ATTESTATION_RESULT).value
    result = AttestationResult.from_der(result_ext.value)  # type: ignore[attr-defined]
    assert (result.platform, result.development) == ("nil", True)
    claims_ext = leaf.extensions.get_extension_for_oid(WORKLOAD_CLAIMS).value
    claims = WorkloadClaims.from_der(claims_ext.value)  # type: ignore[attr-defined]
    assert claims.wasm_sha256 == hashlib.sha256(wasm.read_bytes()).digest()
    assert claims.config_sha256 == hashlib.sha256(config.encode()).digest()
    assert claims.package_name == "claims-check"


def test_two_keeps_of_one_steward_authenticate_each_other(
    tmp_path: Path, real_steward: tuple[str, Path], build_wasm: Callable[[Path], Path]
) -> None:
    url, https_ca = real_steward
    head = f'steward = "{url}"\nsteward_ca = "{https_ca}"\n'
    port = free_port()
    server_cfg = (
        f'{head}args = ["2"]\n{STDIO}[[files]]\nkind = "listen"\nname = "echo"\n'
        f'addr = "127.0.0.1"\nport = {port}\nclient_ca = "steward"\n'
        'expect_client_platform = "nil"\n'  # development clients only when asked for
    )
    server = _run(make_package(tmp_path, "server", build_wasm(PROGRAMS / "echo.c"), server_cfg))
    wait_port(port, server, why=lambda: str(server.communicate()))
    client_cfg = (
        f'{head}args = ["attested hello"]\n{STDIO}[[files]]\nkind = "connect"\nname = "peer"\n'
        f'host = "localhost"\nport = {port}\nclient_cert = true\n'
    )
    client_wasm = build_wasm(PROGRAMS / "client.c")
    # Without expect_platform the client refuses the nil server: not in a TEE (issue #9).
    # (The server admits that client, a nil one as it expects: its guest serves 2 connections.)
    refused = _run(make_package(tmp_path, "refusing", client_wasm, client_cfg))
    out, err = refused.communicate(timeout=120)
    assert (refused.returncode, out) == (1, ""), err
    assert "refused: peer is not in a TEE (platform nil, development certificate)" in err
    expecting = client_cfg + 'expect_platform = "nil"\n'
    client = _run(make_package(tmp_path, "client", client_wasm, expecting))
    out, err = client.communicate(timeout=120)
    assert (client.returncode, out) == (0, "reply: attested hello\n"), err
    _, server_err = server.communicate(timeout=60)
    assert server.returncode == 0, server_err


def test_sim_keep_evidence_is_verified_and_bound_to_key_and_workload(
    tmp_path: Path,
    real_steward: tuple[str, Path],
    sim_state: Path,
    build_wasm: Callable[[Path], Path],
) -> None:
    """The Steward verifies the simulated SNP report, including report_data =
    SHA-512(SPKI || claims): a Keep that bound the wrong bytes would be refused."""
    url, https_ca = real_steward
    config = f'steward = "{url}"\nsteward_ca = "{https_ca}"\n'
    pkg = make_package(tmp_path, "sim-keep", build_wasm(PROGRAMS / "client.c"), config)
    cert_path = tmp_path / "keep.pem"
    proc = _run(pkg, "--state-dir", str(sim_state), "--export-cert", str(cert_path), platform="sim")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err  # the Keep started; client.c then found no "peer"
    assert "for platform sim: DEVELOPMENT only" in err
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    assert leaf.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    result_ext = leaf.extensions.get_extension_for_oid(ATTESTATION_RESULT).value
    result = AttestationResult.from_der(result_ext.value)  # type: ignore[attr-defined]
    assert (result.platform, result.development, len(result.measurement)) == ("sim", True, 48)


def test_sim_evidence_over_the_wrong_report_data_is_refused(
    real_steward: tuple[str, Path], sim_state: Path
) -> None:
    from donjon.keep import identity, platforms
    from donjon.keep.steward_client import StewardClient, StewardRefused

    url, https_ca = real_steward
    platform = platforms.create("sim", sim_state)
    claims = WorkloadClaims(hashlib.sha256(b"w").digest(), b"", "liar")
    key = identity.generate_key(platform)
    # Evidence over the key alone (Enarx's SNP binding), while the CSR carries claims.
    wrong = hashlib.sha384(identity.spki_der(key)).digest().ljust(64, b"\0")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "liar")]))
        .add_extension(x509.UnrecognizedExtension(WORKLOAD_CLAIMS, claims.to_der()), False)
        .add_extension(platform.evidence_extension(wrong), False)
        .sign(key, hashes.SHA384())
    )
    with pytest.raises(StewardRefused, match="HTTP 4"):
        StewardClient(url, https_ca).request(csr)
    # The same key with the right binding (and the Steward's challenge) is accepted.
    client = StewardClient(url, https_ca)
    good = identity.build_csr(key, replace(claims, nonce=client.challenge()), platform)
    assert len(client.request(good)) >= 2
