"""The whole Azure path, in CI: a Keep on the ``azure`` platform against swtpm, a real Steward,
and a client that checks the certificate.

swtpm plays the vTPM; a simulated paravisor writes the HCL report (its SNP report
signed by ``donjon sim``'s hierarchy) and "boots" by extending PCRs 4, 7 and 11;
a fake IMDS on 127.0.0.1 serves THIM. The Steward's policy names the expected
PCRs, computed here by hand: PCR = SHA-256(32 zero bytes || event digest).
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import oids
from donjon.attestation.azure.evidence import (
    AzureEvidence,
    TpmQuote,
    decode_azure_evidence,
    encode_azure_evidence,
)
from donjon.attestation.azure.hcl import build_hcl_report, parse_hcl_report
from donjon.attestation.azure.tpm import parse_attest
from donjon.attestation.claims import WorkloadClaims
from donjon.keep import identity
from donjon.keep.platforms.azure import AzurePlatform
from donjon.keep.platforms.imds import Imds
from donjon.keep.platforms.tpm import open_tpm
from donjon.keep.sim import azure as sim_azure
from donjon.keep.sim import state as sim_state
from donjon.keep.steward_client import StewardClient
from support.azure import FakeImds, Swtpm, require_swtpm, running_swtpm
from support.keepproc import make_package
from support.net import free_port, stop, wait_port
from support.pki import write_self_signed

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
#: What the simulated boot measures into PCRs 4 (boot manager), 7 (Secure Boot), 11 (kernel).
BOOT_EVENTS = {4: b"bootmgr", 7: b"secure boot db", 11: b"kernel"}

pytestmark = pytest.mark.slow

Change = Callable[[AzureEvidence], AzureEvidence]
Tamper = Callable[[bytes, ec.EllipticCurvePrivateKey], x509.CertificateSigningRequest]


def expected_pcr(event: bytes) -> bytes:
    return hashlib.sha256(bytes(32) + hashlib.sha256(event).digest()).digest()


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_swtpm()
    state = tmp_path_factory.mktemp("state")
    proc = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "sim", "init", "--state-dir", str(state)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return state


@pytest.fixture(scope="module")
def sim(sim_dir: Path) -> sim_state.SimState:
    return sim_state.load(sim_dir / "sim")


@pytest.fixture(scope="module")
def imds(sim: sim_state.SimState) -> Iterator[FakeImds]:
    with FakeImds() as fake:
        fake.thim = sim_azure.thim_answer(sim)
        yield fake


@pytest.fixture
def vtpm(tmp_path: Path, sim: sim_state.SimState) -> Iterator[Swtpm]:
    """A freshly booted simulated Azure vTPM."""
    with running_swtpm(tmp_path / "swtpm") as swtpm:
        boot(swtpm, sim)
        yield swtpm


def boot(swtpm: Swtpm, sim: sim_state.SimState, **settings: bool) -> None:
    with open_tpm(swtpm.tcti) as tpm:
        sim_azure.provision(tpm, sim, sim_azure.VmSettings(**settings))  # type: ignore[arg-type]
        for pcr, event in BOOT_EVENTS.items():
            tpm.extend(pcr, hashlib.sha256(event).digest())


@pytest.fixture(scope="module")
def steward(
    tmp_path_factory: pytest.TempPathFactory, sim_dir: Path
) -> Iterator[tuple[str, Path, Path]]:
    """A real Steward whose [azure] section pins PCRs 4, 7 and 11: (url, https CA, Steward CA)."""
    tmp = tmp_path_factory.mktemp("steward")
    cert, key = write_self_signed(tmp, cert_name="https.pem", key_name="https.key")
    pcrs = ", ".join(f'{i} = "{expected_pcr(e).hex()}"' for i, e in BOOT_EVENTS.items())
    (tmp / "policy.toml").write_text(
        f'[sim]\ntrust = "{sim_dir / "sim" / "ark.pem"}"\n\n'
        f"[azure]\npcrs = {{ {pcrs} }}\n"
    )
    port = free_port()
    cmd = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev", "--init",
        "--dir", str(tmp / "state"), "--port", str(port), "--policy", str(tmp / "policy.toml"),
        "--tls-cert", str(cert), "--tls-key", str(key),
    ]  # fmt: skip
    log_path = tmp / "steward.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_port(port, proc, why=lambda: f"steward did not start: {log_path.read_text()[-500:]}")
        try:
            yield f"https://localhost:{port}/", cert, tmp / "state" / "ca.pem"
        finally:
            stop(proc)


def keep_env(swtpm: Swtpm, imds: FakeImds, sim_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DONJON_PLATFORM": "azure",
        "DONJON_TPM_TCTI": swtpm.tcti,
        "DONJON_AZURE_IMDS_URL": imds.url,
        "DONJON_STATE_DIR": str(sim_dir),
    }


def verify_peer(port: int, steward_ca: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "donjon.cli.main", "verify-peer", f"127.0.0.1:{port}",
           "--ca", str(steward_ca), "--server-name", "localhost", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_donjon_run_on_azure_gets_a_certificate_that_a_client_checks(
    tmp_path: Path,
    vtpm: Swtpm,
    imds: FakeImds,
    sim_dir: Path,
    steward: tuple[str, Path, Path],
    build_wasm: Callable[[Path], Path],
) -> None:
    url, https_ca, steward_ca = steward
    wasm = build_wasm(PROGRAMS / "echo.c")
    port = free_port()
    config = (
        f'steward = "{url}"\nsteward_ca = "{https_ca}"\nargs = ["2"]\n{STDIO}'
        f'[[files]]\nkind = "listen"\nname = "echo"\naddr = "127.0.0.1"\nport = {port}\n'
    )
    pkg = make_package(tmp_path, "azure-echo", wasm, config)
    cert_path = tmp_path / "keep.pem"
    keep = subprocess.Popen(
        [sys.executable, "-m", "donjon.cli.main", "run", str(pkg), "--export-cert",
         str(cert_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=keep_env(vtpm, imds, sim_dir),
    )  # fmt: skip
    try:
        wait_port(port, keep, why=lambda: str(keep.communicate(timeout=10)))
        workload = hashlib.sha256(wasm.read_bytes()).hexdigest()
        ok = verify_peer(port, steward_ca, "--platform", "azure-snp", "--allow-development",
                         "--expect-workload", workload, "--json")  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        doc = json.loads(ok.stdout)
        assert doc["accepted"] is True
        assert (doc["platform"], doc["development"]) == ("azure-snp", True)
        # A relying party that demands the plain hardware platform refuses the Azure flavour.
        plain = verify_peer(port, steward_ca, "--platform", "snp", "--allow-development")
        assert plain.returncode != 0
        assert "peer platform azure-snp is not one of snp" in plain.stderr
        _, err = keep.communicate(timeout=60)  # echo.c exits after two connections
    finally:
        if keep.poll() is None:
            stop(keep)
    assert keep.returncode == 0, err
    assert "platform azure: memory and registers are protected by the TEE" in err
    assert "certificate from" in err and "platform azure-snp" in err
    assert ("GET", "/metadata/THIM/amd/certification") in [r[:2] for r in imds.requests]


# --- the Steward refuses what a hostile host can change ----------------------------------


def attempt(
    steward: tuple[str, Path, Path],
    swtpm: Swtpm,
    imds: FakeImds,
    sim_dir: Path,
    tamper: Tamper | None = None,
) -> dict[str, object]:
    """POST a Keep CSR made on ``swtpm`` (tampered with); the Steward's problem, or {}."""
    url, https_ca, _ = steward
    plat = AzurePlatform(tcti=swtpm.tcti, imds=Imds(imds.url, retries=0), cache_dir=sim_dir)
    nonce = StewardClient(url, https_ca).challenge()
    claims = WorkloadClaims(hashlib.sha256(b"w").digest(), b"", "e2e", nonce=nonce)
    key = identity.generate_key(plat)
    csr = identity.build_csr(key, claims, plat)
    if tamper is not None:
        csr = tamper(csr.public_bytes(Encoding.DER), key)
    response = httpx.post(
        url,
        content=csr.public_bytes(Encoding.DER),
        headers={"Content-Type": "application/pkcs10"},
        verify=ssl.create_default_context(cafile=str(https_ca)),
        timeout=30,
    )
    return {} if response.status_code == 200 else dict(response.json())


def resign(
    csr_der: bytes, key: ec.EllipticCurvePrivateKey, change: Change
) -> x509.CertificateSigningRequest:
    csr = x509.load_der_x509_csr(csr_der)
    value = csr.extensions.get_extension_for_oid(oids.EVIDENCE_AZURE).value
    claims = csr.extensions.get_extension_for_oid(oids.WORKLOAD_CLAIMS).value
    assert isinstance(value, x509.UnrecognizedExtension)
    assert isinstance(claims, x509.UnrecognizedExtension)
    evidence = change(decode_azure_evidence(value.value))
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(csr.subject)
        .add_extension(claims, False)
        .add_extension(
            x509.UnrecognizedExtension(oids.EVIDENCE_AZURE, encode_azure_evidence(evidence)),
            False,
        )
        .sign(key, identity.signature_hash(key))
    )


def test_the_genuine_evidence_is_accepted(
    vtpm: Swtpm, imds: FakeImds, sim_dir: Path, steward: tuple[str, Path, Path]
) -> None:
    assert attempt(steward, vtpm, imds, sim_dir) == {}


def test_a_wrong_pcr_value_is_refused(
    vtpm: Swtpm, imds: FakeImds, sim_dir: Path, steward: tuple[str, Path, Path]
) -> None:
    with open_tpm(vtpm.tcti) as tpm:
        tpm.extend(11, hashlib.sha256(b"a kernel the owner did not approve").digest())
    assert attempt(steward, vtpm, imds, sim_dir).get("check") == "policy.pcrs"


def test_a_quote_from_another_ak_is_refused(
    tmp_path: Path, vtpm: Swtpm, imds: FakeImds, sim_dir: Path, steward: tuple[str, Path, Path]
) -> None:
    with running_swtpm(tmp_path / "other") as other, open_tpm(other.tcti) as tpm:
        sim_azure.ensure_ak(tpm)

        def change(evidence: AzureEvidence) -> AzureEvidence:
            assert evidence.quote is not None
            extra = parse_attest(evidence.quote.attest).extra_data
            attest, signature = tpm.quote(0x81000003, list(range(24)), extra)
            pcrs = tuple(tpm.pcr_values(list(range(24))))
            return replace(evidence, quote=TpmQuote(attest, signature, pcrs))

        def swap(csr_der: bytes, key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
            return resign(csr_der, key, change)

        problem = attempt(steward, vtpm, imds, sim_dir, swap)
    assert problem.get("check") == "azure.quote_signature"


def test_extra_data_from_another_key_is_refused(
    vtpm: Swtpm, imds: FakeImds, sim_dir: Path, steward: tuple[str, Path, Path]
) -> None:
    def steal(csr_der: bytes, key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
        thief = ec.generate_private_key(ec.SECP384R1())
        return resign(csr_der, thief, lambda evidence: evidence)

    assert attempt(steward, vtpm, imds, sim_dir, steal).get("check") == "binding.report_data"


def test_runtime_claims_edited_after_signing_are_refused(
    tmp_path: Path, imds: FakeImds, sim: sim_state.SimState, sim_dir: Path,
    steward: tuple[str, Path, Path],
) -> None:  # fmt: skip
    with running_swtpm(tmp_path / "console") as swtpm:
        boot(swtpm, sim, console_enabled=True)

        def change(evidence: AzureEvidence) -> AzureEvidence:
            hcl = parse_hcl_report(evidence.hcl_report)
            on, off = b'"console-enabled":true', b'"console-enabled":false'
            report = build_hcl_report(
                hcl.kind, hcl.hardware_report, hcl.runtime_claims.replace(on, off)
            )
            return replace(evidence, hcl_report=report)

        def hide_console(
            csr_der: bytes, key: ec.EllipticCurvePrivateKey
        ) -> x509.CertificateSigningRequest:
            return resign(csr_der, key, change)

        problem = attempt(steward, swtpm, imds, sim_dir, hide_console)
    assert problem.get("check") == "azure.report_data"


def test_a_console_enabled_vm_is_refused(
    tmp_path: Path, imds: FakeImds, sim: sim_state.SimState, sim_dir: Path,
    steward: tuple[str, Path, Path],
) -> None:  # fmt: skip
    with running_swtpm(tmp_path / "console") as swtpm:
        boot(swtpm, sim, console_enabled=True)
        problem = attempt(steward, swtpm, imds, sim_dir)
    assert problem.get("check") == "policy.console"
