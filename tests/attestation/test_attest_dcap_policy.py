"""``[tdx]``, ``[sgx]`` and ``[sim.tdx]``: strict loading, Enarx's meanings, and each policy
check on real quotes (and on the simulated TDX for what no real vector shows, a debug TD)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from dcap_support import dcap_vectors, load_quote, verify_at

from donjon.attestation import Policy, PolicyError, TrustStore, verify_csr
from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.csr import verify_evidence
from donjon.attestation.errors import (
    EnclaveDebugError,
    PlatformNotAllowedError,
    PolicyViolationError,
    TcbBelowMinimumError,
    TdDebugError,
)
from donjon.attestation.registry import VerifyOptions
from donjon.attestation.sgx.policy import ENARX_ADVISORY_STATUSES
from donjon.attestation.verifiers import REGISTRY
from donjon.keep import identity
from donjon.keep.platforms import sim as sim_platform
from donjon.keep.sim import tdx_state

CLAIMS = WorkloadClaims(bytes(range(32)), b"", "demo", nonce=bytes(32))


def load(text: str, base: Path = Path(".")) -> Policy:
    return Policy.from_toml(text, source="test.toml", base_dir=base)


def _vector(expected: dict[str, Any], vector_id: str) -> dict[str, Any]:
    return next(v for v in dcap_vectors(expected) if v["id"] == vector_id)


def judge(vectors: Path, expected: dict[str, Any], vector_id: str, policy_text: str) -> Any:
    """A vector with its collateral, judged by ``policy_text``."""
    vector = _vector(expected, vector_id)
    data = load_quote(vectors, vector)
    found = REGISTRY.recognise(data)
    assert found is not None
    form, quote = found
    material = {"collateral": vectors / vector["collateral"]}
    return verify_evidence(
        quote,
        form,
        policy=load(policy_text),
        trust=TrustStore(),
        now=verify_at(vector),
        options=VerifyOptions(material=material),
    )


def failed(verdict: Any) -> dict[str, str]:
    return {c.id: c.reason for c in verdict.checks if not c.passed}


# --- loading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[tdx]\nmrtd = ['00']", "[tdx] mrtd: 00... is 1 bytes, expected 48"),
        ("[tdx]\nmrtdd = []", "[tdx] mrtdd: unknown key"),
        (f"[tdx]\nmrtd = ['{'11' * 48}']\nmrtd_deny = ['{'11' * 48}']", "both the allow and deny"),
        ("[tdx]\ntd_attributes_forbidden = ['NOPE']", "unknown flag 'NOPE'"),
        ("[tdx]\ntd_attributes_required = ['DEBUG']", "needs allow_debug = true"),
        (
            "[tdx]\ntd_attributes_required = ['PKS']\ntd_attributes_forbidden = ['PKS']",
            "also required",
        ),
        ("[tdx]\nmin_tee_tcb_svn = 'zz'", "is not hex"),
        ("[tdx]\ntcb_mode = 'maybe'", '[tdx] tcb_mode: must be "require" or "if-available"'),
        ("[tdx]\npccs_url = 'ftp://x'", "must be an http(s) URL"),
        ("[sgx]\nfeatures = ['Turbo']", "unknown flag 'Turbo'"),
        ("[sgx]\nenclave_security_version = 1\nmin_isvsvn = 2", "other name"),
        ("[sgx]\nhash = ['ab']", "[sgx] hash: ab... is 1 bytes, expected 32"),
        ("[sim.tdx]\ntrust = 3", "[sim.tdx] trust: must be a path"),
        ("[sim.tdx]\nmrtdd = 3", "[sim.tdx] mrtdd: unknown key"),
    ],
)
def test_strict_loading(text: str, words: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load(text)
    assert words in raised.value.message


def test_tdx_keys_load() -> None:
    mrtd, rtmr = "11" * 48, "22" * 48
    policy = load(
        f"""[tdx]
mrtd = "{mrtd}"
rtmr1 = ["{rtmr}"]
td_attributes_required = ["SEPT_VE_DISABLE"]
td_attributes_forbidden = "PKS | KL"
xfam = ["e702060000000000"]
min_tee_tcb_svn = "{"03" * 16}"
crl = "if-available"
qe_identity = "require"
pccs_url = "https://pccs.example:8081/"
tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
allowed_advisories = ["INTEL-SA-00837"]
"""
    )
    tdx = policy.tees["tdx"]
    assert tdx.pinned() == ("mrtd", "rtmr1")
    assert tdx.attributes_required == 1 << 28
    assert tdx.attributes_forbidden == (1 << 30) | (1 << 31)
    assert (
        tdx.collateral.crl == "if-available"
        and tdx.collateral.pccs_url == "https://pccs.example:8081"
    )
    assert tdx.rules.tcb_statuses == frozenset({"UpToDate", "SWHardeningNeeded"})


def test_sections_that_pin_nothing_are_named(vectors: Path) -> None:
    policy = load("[tdx]\n[sgx]\n")
    problems = policy.unpinned()
    assert any("[tdx] pins nothing (no mrtd" in p for p in problems)
    assert any("[sgx] pins nothing (no signer/hash" in p for p in problems)


def test_enarx_sgx_meanings(vectors: Path) -> None:
    policy = load((vectors / "enarx-steward/steward_testdata_policy.toml").read_text())
    sgx = policy.tees["sgx"]
    assert sgx.min_isvsvn == 0 and sgx.product_id == 0
    # INIT and MODE64BIT always allowed, plus Debug, ProvisioningKey, EInitKey, KSS.
    assert sgx.features == 0b1 | 0b100 | 0b10 | 0b10000 | 0b100000 | 0b10000000
    assert not sgx.allow_debug
    # Listing advisories without tcb_statuses accepts the statuses they explain.
    assert sgx.default_statuses == ENARX_ADVISORY_STATUSES
    assert "Revoked" not in ENARX_ADVISORY_STATUSES and "OutOfDate" in ENARX_ADVISORY_STATUSES
    assert load("[sgx]\n").tees["sgx"].default_statuses == frozenset({"UpToDate"})


# --- judging real quotes -------------------------------------------------------------------


def test_tdx_measurements(vectors: Path, expected: dict[str, Any]) -> None:
    body = _vector(expected, "tdx-v4-phala")["computed"]["parsed"]["body"]
    ok = judge(
        vectors, expected, "tdx-v4-phala",
        f'[tdx]\nmrtd = "{body["mrtd"]}"\nrtmr0 = "{body["rtmr0"]}"\nxfam = ["{body["xfam"]}"]\n'
        f'mrseam = ["{body["mrseam"]}"]\ntd_attributes_required = ["SEPT_VE_DISABLE"]\n',
    )  # fmt: skip
    assert ok.accepted, failed(ok)
    assert ok.result.measurement.hex() == body["mrtd"]
    bad = judge(
        vectors, expected, "tdx-v4-phala",
        f'[tdx]\nmrtd = "{"00" * 48}"\nrtmr1_deny = ["{body["rtmr1"]}"]\n'
        f'td_attributes_forbidden = ["SEPT_VE_DISABLE"]\nxfam = ["0000000000000000"]\n',
    )  # fmt: skip
    assert not bad.accepted
    assert set(failed(bad)) == {
        "policy.mrtd",
        "policy.rtmr1_deny",
        "policy.td_attributes",
        "policy.xfam",
    }


def test_tdx_minimum_tee_tcb_svn(vectors: Path, expected: dict[str, Any]) -> None:
    # tee_tcb_svn 06010300... (expected.json): byte 0 is 6.
    verdict = judge(
        vectors, expected, "tdx-v4-phala",
        f'[tdx]\naccept_any_workload = true\nmin_tee_tcb_svn = "07{"00" * 15}"\n',
    )  # fmt: skip
    assert verdict.reason == "tcb.tee_tcb_svn"
    assert isinstance(verdict.error, TcbBelowMinimumError)


def test_sgx_status_the_policy_does_not_accept(vectors: Path, expected: dict[str, Any]) -> None:
    want = _vector(expected, "sgx-v3-phala")["computed"]["collateral_checks"]["tcb_status"]
    verdict = judge(vectors, expected, "sgx-v3-phala", "[sgx]\naccept_any_workload = true\n")
    assert not verdict.accepted and verdict.reason == "policy.tcb_status"
    assert isinstance(verdict.error, PolicyViolationError)
    assert want[0] in verdict.error.message
    allowed = json.dumps(want[1])
    accepted = judge(
        vectors, expected, "sgx-v3-phala",
        f'[sgx]\naccept_any_workload = true\ntcb_statuses = ["{want[0]}"]\n'
        f"allowed_advisories = {allowed}\n",
    )  # fmt: skip
    assert accepted.accepted, failed(accepted)
    assert accepted.result.tcb_status == want[0]
    assert list(accepted.result.advisories) == want[1]


def test_sgx_enarx_keys_on_a_real_quote(vectors: Path, expected: dict[str, Any]) -> None:
    body = _vector(expected, "sgx-v3-phala")["computed"]["parsed"]["body"]
    base = '[sgx]\ntcb_statuses = ["ConfigurationAndSWHardeningNeeded"]\n'
    base += 'allowed_advisories = ["INTEL-SA-00289", "INTEL-SA-00615"]\n'
    ok = judge(
        vectors, expected, "sgx-v3-phala",
        base + f'signer = ["{body["mrsigner"]}"]\nhash = ["{body["mrenclave"]}"]\n'
        "features = []\nenclave_product_id = 0\nenclave_security_version = 0\n",
    )  # fmt: skip
    assert ok.accepted, failed(ok)
    bad = judge(
        vectors, expected, "sgx-v3-phala",
        base + f'hash_blacklist = ["{body["mrenclave"]}"]\nenclave_product_id = 3\n'
        "min_isvsvn = 1\naccept_any_workload = true\n",
    )  # fmt: skip
    assert set(failed(bad)) == {
        "policy.mrenclave_deny",
        "policy.enclave_product_id",
        "policy.isvsvn",
    }


def test_sgx_debug_enclave_is_its_own_refusal() -> None:
    from donjon.attestation.dcap.quote import EnclaveReport
    from donjon.attestation.sgx.appraise import appraise_enclave
    from donjon.attestation.verdict import Checklist

    report = EnclaveReport(
        cpusvn=bytes(16), miscselect=bytes(4), isv_ext_prod_id=bytes(16),
        attributes=bytes([0b111]) + bytes(15), mrenclave=bytes(32), mrsigner=bytes(32),
        config_id=bytes(64), isvprodid=0, isvsvn=0, config_svn=0, isv_family_id=bytes(16),
        report_data=bytes(64),
    )  # fmt: skip
    checks = Checklist()
    appraise_enclave(report, load('[sgx]\nfeatures = ["Debug"]\n').tees["sgx"], checks)
    assert checks.first_failed == "sgx.debug" and isinstance(checks.error, EnclaveDebugError)
    checks = Checklist()
    appraise_enclave(report, load("[sgx]\nallow_debug = true\n").tees["sgx"], checks)
    assert checks.passed


# --- the simulated TDX: a debug TD, and [sim.tdx] trust ------------------------------------


def sim_csr(state_dir: Path, config: tdx_state.TdxSimConfig) -> tuple[bytes, Path]:
    state = tdx_state.init(state_dir / "sim", config)
    platform = sim_platform.create(state_dir)
    key = identity.generate_key(platform)
    csr = identity.build_csr(key, CLAIMS, platform).public_bytes(Encoding.DER)
    return csr, state.root_path


def test_debug_td_is_refused(tmp_path: Path) -> None:
    config = tdx_state.TdxSimConfig(td_attributes=tdx_state.DEFAULT_ATTRIBUTES | 1)
    csr, root = sim_csr(tmp_path, config)
    policy = f'[sim.tdx]\ntrust = "{root}"\naccept_any_workload = true\n'
    verdict = verify_csr(csr, policy=load(policy), trust=TrustStore(), now=datetime.now(UTC))
    assert verdict.reason == "tdx.debug" and isinstance(verdict.error, TdDebugError)
    assert verdict.error.code == "tdx.debug"
    allowed = verify_csr(
        csr, policy=load(policy + "allow_debug = true\n"), trust=TrustStore(), now=datetime.now(UTC)
    )
    assert allowed.accepted and allowed.result is not None and allowed.result.debug


def test_sim_tdx_is_pinned_by_its_root_as_sim_is(tmp_path: Path) -> None:
    # The lab's policy: the simulator's root and the workload, no accept_any_workload.
    csr, root = sim_csr(tmp_path, tdx_state.TdxSimConfig())
    text = f'[sim.tdx]\ntrust = "{root}"\nallowed_workloads = ["{CLAIMS.wasm_sha256.hex()}"]\n'
    verdict = verify_csr(csr, policy=load(text), trust=TrustStore(), now=datetime.now(UTC))
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert next(c for c in verdict.checks if c.id == "policy.pinned").reason == "pinned by trust"


def test_sim_tdx_needs_its_trust_entry(tmp_path: Path) -> None:
    csr, _root = sim_csr(tmp_path, tdx_state.TdxSimConfig())
    verdict = verify_csr(
        csr, policy=load("[tdx]\naccept_any_workload = true\n"), trust=TrustStore(),
        now=datetime.now(UTC),
    )  # fmt: skip
    assert verdict.reason == "platform.allowed" and isinstance(
        verdict.error, PlatformNotAllowedError
    )
    assert "[sim.tdx] trust" in verdict.error.message
    other = FakeRoot(tmp_path / "other.pem")
    wrong = verify_csr(
        csr, policy=load(f'[sim.tdx]\ntrust = "{other.path}"\naccept_any_workload = true\n'),
        trust=TrustStore(), now=datetime.now(UTC),
    )  # fmt: skip
    assert wrong.reason == "dcap.pck_chain"


def test_sim_tdx_status_the_policy_does_not_accept(tmp_path: Path) -> None:
    config = tdx_state.TdxSimConfig(tcb_status="OutOfDate", advisories=("INTEL-SA-00000",))
    csr, root = sim_csr(tmp_path, config)
    policy = f'[sim.tdx]\ntrust = "{root}"\naccept_any_workload = true\n'
    verdict = verify_csr(csr, policy=load(policy), trust=TrustStore(), now=datetime.now(UTC))
    assert set(failed(verdict)) == {"policy.tcb_status", "policy.advisories"}


class FakeRoot:
    """A self-signed P-256 certificate named like Intel's root, written to ``path``."""

    def __init__(self, path: Path) -> None:
        from donjon.keep.sim.tdx_hierarchy import make_ca

        ca = make_ca("Intel SGX Root CA", None, datetime.now(UTC), path_length=1)
        path.write_bytes(ca.cert.public_bytes(Encoding.PEM))
        self.path = path
