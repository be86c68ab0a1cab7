"""A Steward judges TDX CSRs: the simulated TDX product gets a development certificate that
names its TCB status; a Donjon TDX CSR whose quote does not chain to Intel is refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from steward_harness import RunningSteward, StewardFactory

from donjon.attestation import Policy, TrustStore, oids, verify_csr
from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.keep import identity
from donjon.keep.platforms import sim as sim_platform
from donjon.keep.platforms.base import Platform
from donjon.keep.sim import tdx_state
from donjon.steward import wire
from donjon.steward.clock import fixed_clock

CLAIMS = WorkloadClaims(bytes(range(32)), b"", "tdx-demo")
PKCS10 = {"Content-Type": "application/pkcs10"}


class _Relabelled:
    """The sim's TDX quote under Donjon's real TDX OID: genuine layout, foreign root."""

    def __init__(self, platform: sim_platform.SimPlatform) -> None:
        self._platform = platform
        self.name = "tdx"

    def key_curve(self) -> object:
        return self._platform.key_curve()

    def available(self) -> bool:
        return True

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        ext = self._platform.evidence_extension(report_data)
        return x509.UnrecognizedExtension(oids.EVIDENCE_TDX, ext.value)


@pytest.fixture(scope="module")
def tdx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("tdx-home")
    tdx_state.init(home / "sim", tdx_state.TdxSimConfig())
    return home


def _steward(
    start_steward: StewardFactory, home: Path, tmp_path: Path, extra: str = ""
) -> RunningSteward:
    root = home / "sim" / "tdx-root.pem"
    text = f'[sim.tdx]\ntrust = "{root}"\naccept_any_workload = true\n[tdx]\n'
    text += f"accept_any_workload = true\n{extra}"
    policy = Policy.from_toml(text, source="tdx.toml", base_dir=tmp_path)
    return start_steward(
        verifier=verify_csr, policy=policy, trust=TrustStore(), clock=fixed_clock(datetime.now(UTC))
    )


def _csr(steward: RunningSteward, platform: Platform) -> bytes:
    nonce = bytes.fromhex(steward.client.post("/v1/challenge").json()["nonce"])
    key = identity.generate_key(platform)
    claims = replace(CLAIMS, nonce=nonce)
    return identity.build_csr(key, claims, platform).public_bytes(Encoding.DER)


def test_sim_tdx_csr_gets_a_development_certificate(
    start_steward: StewardFactory, tdx_home: Path, tmp_path: Path
) -> None:
    steward = _steward(start_steward, tdx_home, tmp_path)
    platform = sim_platform.create(tdx_home)
    response = steward.client.post("/v1/attest", content=_csr(steward, platform), headers=PKCS10)
    assert response.status_code == 200, response.text
    _ca, leaf_der = wire.split_sequence(response.content, "answer")
    leaf = x509.load_der_x509_certificate(leaf_der)
    ext = leaf.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    result = AttestationResult.from_der(ext.value)
    assert (result.platform, result.development, result.debug) == ("sim", True, False)
    assert result.tcb_status == "UpToDate"  # what the simulated Intel publishes by default
    assert result.product.startswith("TDX FMSPC ")
    assert result.workload is not None and result.workload.package_name == "tdx-demo"


def test_donjon_tdx_csr_with_a_foreign_root_is_refused(
    start_steward: StewardFactory, tdx_home: Path, tmp_path: Path
) -> None:
    steward = _steward(start_steward, tdx_home, tmp_path)
    platform = _Relabelled(sim_platform.create(tdx_home))
    response = steward.client.post(
        "/v1/attest",
        content=_csr(steward, platform),  # type: ignore[arg-type]
        headers=PKCS10,
    )
    assert response.status_code == 401, response.text  # evidence not authentic
    body = response.json()
    assert body["check"] == "dcap.pck_chain"
    assert "foreign root" in body["detail"]
