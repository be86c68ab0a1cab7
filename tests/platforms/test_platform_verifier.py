"""Evidence from the platforms goes through the real verifier (donjon.attestation).

The sim platform's CSR must be accepted only under a policy that names the sim
ARK, and be labelled platform=sim; snp evidence made with the sim hierarchy must
parse as Enarx SNP evidence and then be refused because its root is not AMD's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fake_kernel import FakeConfigfs

from donjon.attestation import Policy, TrustStore, verify_csr
from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.errors import (
    ChainError,
    DebugNotAllowedError,
    PlatformNotAllowedError,
    TcbBelowMinimumError,
)
from donjon.keep import identity
from donjon.keep.platforms import sim as sim_platform
from donjon.keep.platforms.base import Platform
from donjon.keep.platforms.configfs import ConfigfsTsm
from donjon.keep.platforms.devguest import SevGuestDevice
from donjon.keep.platforms.snp import GUID_ARK, GUID_ASK, GUID_VCEK, SnpPlatform, build_cert_table
from donjon.keep.sim import state
from donjon.keep.sim.report import GuestIdentity, make_report

#: With a challenge nonce: that the Steward gave it is the Steward's check, not the engine's.
CLAIMS = WorkloadClaims(
    wasm_sha256=bytes(range(32)), config_sha256=b"", package_name="demo", nonce=bytes(32)
)


def csr_der(platform: Platform) -> bytes:
    key = identity.generate_key(platform)
    return identity.build_csr(key, CLAIMS, platform).public_bytes(Encoding.DER)


def policy(text: str, base: Path) -> Policy:
    return Policy.from_toml(text, source="test policy", base_dir=base)


def test_sim_evidence_accepted_with_sim_trust(sim_state_dir: Path, tmp_path: Path) -> None:
    ark = sim_state_dir / "sim" / "ark.pem"
    verdict = verify_csr(
        csr_der(sim_platform.create(sim_state_dir)),
        policy=policy(f'[sim]\ntrust = "{ark}"\n', tmp_path),
        trust=TrustStore.offline(tmp_path),
        now=datetime.now(UTC),
    )
    assert verdict.accepted, verdict.to_dict()
    assert verdict.result is not None
    assert verdict.result.platform == "sim" and verdict.result.development
    assert verdict.result.product == "Milan"
    assert verdict.result.workload == CLAIMS
    assert verdict.result.debug is False


def test_sim_evidence_refused_without_sim_trust(sim_state_dir: Path, tmp_path: Path) -> None:
    verdict = verify_csr(
        csr_der(sim_platform.create(sim_state_dir)),
        policy=policy("[snp]\naccept_any_workload = true\n", tmp_path),
        trust=TrustStore.offline(tmp_path),
        now=datetime.now(UTC),
    )
    assert not verdict.accepted
    assert isinstance(verdict.error, PlatformNotAllowedError)
    assert "[sim] trust" in verdict.error.message


def test_sim_debug_guest_refused(sim_state_dir: Path, tmp_path: Path) -> None:
    path = sim_state_dir / "sim" / "sim.json"
    path.write_text(path.read_text().replace('"0x30000"', '"0xb0000"'))
    ark = sim_state_dir / "sim" / "ark.pem"
    verdict = verify_csr(
        csr_der(sim_platform.create(sim_state_dir)),
        policy=policy(f'[sim]\ntrust = "{ark}"\n', tmp_path),
        trust=TrustStore.offline(tmp_path),
        now=datetime.now(UTC),
    )
    assert not verdict.accepted and isinstance(verdict.error, DebugNotAllowedError)


def test_sim_tcb_below_policy_minimum(sim_state_dir: Path, tmp_path: Path) -> None:
    ark = sim_state_dir / "sim" / "ark.pem"
    # The session hierarchy is at ucode=209 (conftest); the policy demands 210.
    text = f'[sim]\ntrust = "{ark}"\nmin_reported_tcb = {{ ucode = 210 }}\n'
    verdict = verify_csr(
        csr_der(sim_platform.create(sim_state_dir)),
        policy=policy(text, tmp_path),
        trust=TrustStore.offline(tmp_path),
        now=datetime.now(UTC),
    )
    assert not verdict.accepted and isinstance(verdict.error, TcbBelowMinimumError)
    assert "ucode=209<210" in verdict.error.message


def test_snp_evidence_from_fake_guest_is_parsed_then_refused_at_the_amd_root(
    sim_state_dir: Path, tmp_path: Path, vectors: Path
) -> None:
    loaded = state.load(sim_state_dir / "sim")
    guest = GuestIdentity(bytes(48))

    def provider(inblob: bytes) -> tuple[bytes, bytes]:
        table = build_cert_table(
            {
                GUID_VCEK: loaded.vcek.public_bytes(Encoding.DER),
                GUID_ASK: loaded.ask.public_bytes(Encoding.DER),
                GUID_ARK: loaded.ark.public_bytes(Encoding.DER),
            }
        )
        return make_report(loaded.config, loaded.vcek_key, guest, inblob), table

    fake = FakeConfigfs(tmp_path, "sev_guest", provider)
    device = SevGuestDevice(path=tmp_path / "sev-guest")
    device.path.touch()
    platform = SnpPlatform(tsm=ConfigfsTsm(fake.root, fs=fake), device=device, linux=True)
    verdict = verify_csr(
        csr_der(platform),
        policy=policy("[snp]\naccept_any_workload = true\n", tmp_path),
        trust=TrustStore.offline(vectors / "amd-roots"),
        now=datetime.now(UTC),
    )
    passed = {c.id for c in verdict.checks if c.passed}
    assert verdict.platform == "snp"
    assert {"csr.signature", "evidence.format", "snp.report"} <= passed
    assert not verdict.accepted and isinstance(verdict.error, ChainError)


@pytest.mark.parametrize("name", ["snp", "tdx", "sgx"])
def test_hardware_platforms_unavailable_here(name: str, tmp_path: Path) -> None:
    from donjon.keep import platforms

    if Path("/dev/sev-guest").exists() or Path("/dev/tdx_guest").exists():
        pytest.skip("running inside a real TEE guest")
    assert not platforms.create(name, tmp_path).available()
