"""The Steward issues certificates on CCA and Nitro evidence: the verifier's verdict for a
Keep's CSR becomes a leaf whose AttestationResult names the platform (and, for Nitro, the
hypervisor-trusted advisory and a lifetime bounded by the document's leaf certificate)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import Policy, TrustStore, verify_csr
from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.peer import read_attestation
from donjon.keep.identity import build_csr, generate_key
from donjon.keep.platforms.sim_cca import SimCcaPlatform
from donjon.keep.sim import cca as sim_cca
from donjon.steward.ca import CertificateAuthority
from donjon.steward.issue import issue_certificate
from support.nitro import make_nitro

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CLAIMS = WorkloadClaims(hashlib.sha256(b"wasm").digest(), b"", "demo", nonce=b"\x42" * 32)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(curve="p256", now=NOW - timedelta(days=1))


def test_cca_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    state = sim_cca.init(tmp_path / "sim-cca")
    platform = SimCcaPlatform(state.directory, measurement=b"\x05" * 48)
    csr = build_csr(generate_key(platform), CLAIMS, platform).public_bytes(Encoding.DER)
    policy = Policy.from_toml(
        f'[cca]\ntrust_anchors = "{state.tastore}"\nrim = ["{platform.rim().hex()}"]\n',
        source="t.toml",
        base_dir=tmp_path,
    )
    verdict = verify_csr(csr, policy=policy, trust=TrustStore(), now=NOW)
    assert verdict.accepted, verdict.error
    leaf = issue_certificate(ca, verdict, policy, now=NOW).certificate
    result, workload = read_attestation(leaf)
    assert result.platform == "cca"
    assert result.measurement == platform.rim()
    assert workload == CLAIMS


def test_nitro_certificate(
    ca: CertificateAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from donjon.attestation.nitro.evidence import encode_nitro_evidence
    nitro = make_nitro(NOW)
    monkeypatch.setattr(
        "donjon.attestation.nitro.verify.AWS_NITRO_ROOT_SHA256",
        nitro.root.fingerprint(hashes.SHA256()).hex(),
    )

    class Enclave:
        name = "nitro"

        def key_curve(self):  # type: ignore[no-untyped-def]
            from cryptography.hazmat.primitives.asymmetric import ec

            return ec.SECP384R1()

        def evidence_extension(self, data: bytes):  # type: ignore[no-untyped-def]
            from cryptography import x509

            from donjon.attestation import oids

            return x509.UnrecognizedExtension(
                oids.EVIDENCE_NITRO, encode_nitro_evidence(nitro.document(user_data=data))
            )

    enclave = Enclave()
    key = generate_key(enclave)  # type: ignore[arg-type]
    csr = build_csr(key, CLAIMS, enclave).public_bytes(Encoding.DER)  # type: ignore[arg-type]
    policy = Policy.from_toml(
        f'[nitro]\npcr0 = ["{"01" * 48}"]\n', source="t.toml", base_dir=tmp_path
    )
    verdict = verify_csr(csr, policy=policy, trust=TrustStore(), now=NOW)
    assert verdict.accepted, verdict.error
    leaf = issue_certificate(ca, verdict, policy, now=NOW).certificate
    result, _ = read_attestation(leaf)
    assert result.platform == "nitro"
    assert result.advisories == ("hypervisor-trusted", "revocation-not-checked")
    assert leaf.not_valid_after_utc <= nitro.leaf.not_valid_after_utc
