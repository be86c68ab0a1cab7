"""No warning escapes, no exception escapes: AMD's serial-0 certificates and fuzzed input."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from attest_fakes import at, make_csr
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.attestation import Policy, TrustStore, oids, verify_csr, verify_report
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.evidence import decode_enarx_snp, decode_sim


def test_serial_zero_vceks_raise_no_warning(
    vectors: Path,
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
) -> None:
    from donjon.attestation.x509util import load_certificate

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning, e.g. cryptography's serial-0 one, fails
        vector = vector_by_id("snp-milan-v2-virtee")
        vcek = load_certificate((vectors / vector["endorsement_cert"]).read_bytes())
        verdict = verify_report(
            load_report(vector),
            policy=Policy.default(),
            trust=TrustStore.offline(vectors / "amd-roots"),
            now=at("2025-01-01T00:00:00Z"),
            vcek=vcek,
            crl_mode="if-available",  # the only Milan CRL expired on 2023-05-09
        )
        assert verdict.accepted
        csr = (vectors / "enarx-steward/snp_milan.signed.crl.csr").read_bytes()
        assert verify_csr(
            csr,
            policy=Policy.default(),
            trust=TrustStore.offline(vectors / "amd-roots"),
            now=at("2023-02-01T00:00:00Z"),
        ).accepted
    assert warnings.filters  # the global filters are untouched by the local suppression
    assert not any(f[0] == "ignore" and "serial" in str(f[1]) for f in warnings.filters)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_fuzz_evidence_decoders(data: bytes) -> None:
    for decode in (decode_enarx_snp, decode_sim):
        with contextlib.suppress(MalformedEvidenceError):
            decode(data)


@pytest.fixture(scope="module")
def steward_evidence(vectors: Path) -> bytes:
    csr = x509.load_der_x509_csr((vectors / "enarx-steward/snp_milan.signed.crl.csr").read_bytes())
    value = csr.extensions.get_extension_for_oid(oids.ENARX_SNP).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_mutated_evidence_gives_a_verdict(
    data: st.DataObject, steward_evidence: bytes, vectors: Path
) -> None:
    """Flip, cut or extend the real evidence: verify_csr answers, it never raises."""
    blob = bytearray(steward_evidence)
    action = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if action == "flip":
        index = data.draw(st.integers(0, len(blob) - 1))
        blob[index] ^= data.draw(st.integers(1, 255))
    elif action == "cut":
        del blob[data.draw(st.integers(0, len(blob) - 1)) :]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=16))
    csr, _ = make_csr([(oids.ENARX_SNP, bytes(blob), False)])
    verdict = verify_csr(
        csr,
        policy=Policy.default(),
        trust=TrustStore.offline(vectors / "amd-roots"),
        now=at("2023-02-01T00:00:00Z"),
    )
    assert not verdict.accepted  # the key binding alone fails for a new key
    assert verdict.error is not None and verdict.reason is not None


def test_naive_time_is_refused_as_a_verdict(vectors: Path) -> None:
    csr = (vectors / "enarx-steward/snp_milan.signed.crl.csr").read_bytes()
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_csr(
            csr,
            policy=Policy.default(),
            trust=TrustStore.offline(vectors / "amd-roots"),
            now=datetime(2023, 2, 1),
        )


def test_the_sim_platform_is_verified_by_this_engine(tmp_path: Path) -> None:
    """Cross-check with the Keep's simulated TEE (another package), when it is present."""
    sim_state = pytest.importorskip("donjon.keep.sim.state")
    products = pytest.importorskip("donjon.keep.sim.products")
    sim_platform = pytest.importorskip("donjon.keep.platforms.sim")
    identity = pytest.importorskip("donjon.keep.identity")
    from donjon.attestation.claims import WorkloadClaims

    # Turin only: its RSA-4096 hierarchy takes seconds to generate, and it is the layout
    # that differs most (FMC SPL, 8-byte hwID); Milan and Genoa are covered by real vectors.
    for name in ("Turin",):
        directory = tmp_path / name
        product = products.Product.parse(name)
        default_tcb = products.DEFAULT_TCB
        tcb = default_tcb[product] if isinstance(default_tcb, dict) else default_tcb
        config = sim_state.SimConfig(product, tcb, sim_state.random_chip_id(product))
        sim_state.init(directory, config)
        platform = sim_platform.SimPlatform(directory, measurement=b"\x11" * 48)
        key = identity.generate_key(platform)
        claims = WorkloadClaims(
            hashlib.sha256(b"main.wasm").digest(), b"", "demo", nonce=os.urandom(32)
        )
        csr = identity.build_csr(key, claims, platform).public_bytes(Encoding.DER)
        shutil.copy(directory / "ark.pem", tmp_path / "ark.pem")
        policy = Policy.from_toml('[sim]\ntrust = "ark.pem"', source="p", base_dir=tmp_path)
        verdict = verify_csr(csr, policy=policy, trust=TrustStore(), now=datetime.now(UTC))
        assert verdict.accepted, (name, verdict.reason, verdict.error)
        assert verdict.result is not None
        assert verdict.result.product == name and verdict.result.platform == "sim"
        assert verdict.result.measurement == b"\x11" * 48
        assert verdict.result.workload == claims
