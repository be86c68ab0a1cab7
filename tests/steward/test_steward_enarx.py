"""Enarx's own Steward vectors get certificates from a Donjon Steward (real verifier).

Expected values come from the vector's documentation and expected.json (vendor
facts), never from the code under test. Their collateral expired long ago, so
the Steward's clock is fixed at 2023-02-01T00:00Z, inside every window.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from steward_harness import RunningSteward, StewardFactory, StewardProcess, TlsFiles

from donjon.attestation import oids
from donjon.attestation.claims import AttestationResult
from donjon.steward import wire
from donjon.steward.clock import NOW_ENV, fixed_clock
from support.net import free_port

AT = datetime(2023, 2, 1, tzinfo=UTC)
PKCS10 = {"Content-Type": "application/pkcs10"}


def _engine() -> Any:
    import donjon.attestation as attestation

    if not hasattr(attestation, "verify_csr"):
        pytest.skip("the attestation engine does not export verify_csr yet")
    return attestation


def _vector(vectors: Path, name: str) -> bytes:
    return (vectors / "enarx-steward" / name).read_bytes()


def _start(start_steward: StewardFactory, vectors: Path, policy_path: Path) -> RunningSteward:
    engine = _engine()
    return start_steward(
        verifier=engine.verify_csr,
        policy=engine.load_policy(policy_path),
        trust=engine.TrustStore.offline(vectors),
        clock=fixed_clock(AT),
    )


@pytest.fixture
def enarx_steward(start_steward: StewardFactory, vectors: Path) -> RunningSteward:
    return _start(
        start_steward, vectors, vectors / "enarx-steward" / "steward_testdata_policy.toml"
    )


@pytest.fixture(scope="module")
def snp_vector(expected: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in expected["vectors"] if v["id"] == "snp-milan-v2-steward-csr")


def test_enarx_snp_csr_gets_a_certificate(
    enarx_steward: RunningSteward, vectors: Path, snp_vector: dict[str, Any]
) -> None:
    csr_der = _vector(vectors, "snp_milan.signed.crl.csr")
    r = enarx_steward.client.post("/", content=csr_der, headers=PKCS10)
    assert r.status_code == 200, r.text
    ca_der, leaf_der = wire.split_sequence(r.content, "Enarx answer")
    ca = x509.load_der_x509_certificate(ca_der)
    leaf = x509.load_der_x509_certificate(leaf_der)
    leaf.verify_directly_issued_by(ca)
    assert leaf.public_key() == x509.load_der_x509_csr(csr_der).public_key()
    # 28 days (the default lifetime) from the injected time: before the Milan CRL's nextUpdate.
    assert leaf.not_valid_after_utc == datetime(2023, 3, 1, tzinfo=UTC)
    ext = leaf.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    result = AttestationResult.from_der(ext.value)
    report = snp_vector["computed"]["report"]
    assert result.platform == "snp"
    assert result.measurement.hex() == report["measurement"]
    assert (result.debug, result.development) == (False, False)
    # The policy id is the SHA-256 of the policy file (SHA256SUMS in the vector folder).
    assert result.policy_id == "bdd6c6cf25298459000ce5728f3988591a3b6758ca8c93d80ec7b94a144181f1"
    record = enarx_steward.client.get(
        f"/v1/certificates/{leaf.serial_number:x}",
        headers={"Authorization": "Bearer s3cret-token"},  # the conftest's admin token
    ).json()
    assert record["platform"] == "snp"
    assert record["evidence_sha256"] == record["verdict"]["evidence_sha256"]


def test_enarx_snp_csr_as_a_bundle(enarx_steward: RunningSteward, vectors: Path) -> None:
    body = wire.encode_certificates([_vector(vectors, "snp_milan.signed.crl.csr")])
    r = enarx_steward.client.post("/", content=body, headers={"Content-Type": wire.BUNDLE})
    assert r.status_code == 200, r.text
    chain, issued = wire.decode_bundle_output(r.content)
    assert len(chain) == 1 and len(issued) == 1


#: The SGX vectors' facts (enarx-steward/README.md): measurements, and the TCB Info inside
#: each CSR; the PCK CRLs inside expire first (2023-02-17 for the i5, 2023-02-24 for the Xeon).
SGX_MRENCLAVE = "4046ea255f0455131a024e1265ac1ebd131fdbd1240f1712a00381f6f04e8c15"
SGX_CRL_NEXT_UPDATE = {
    "sgx_icelake.signed.tcb.crl.single.i5.csr": datetime(2023, 2, 17, 18, 46, 52, tzinfo=UTC),
    "sgx_icelake.signed.tcb.crl.multi.xeon.csr": datetime(2023, 2, 24, 6, 0, 49, tzinfo=UTC),
}


@pytest.mark.parametrize("name", sorted(SGX_CRL_NEXT_UPDATE))
def test_enarx_sgx_csrs_get_certificates(
    enarx_steward: RunningSteward, vectors: Path, name: str
) -> None:
    """As in Enarx's own tests: the Enarx policy, 2023-02-01, collateral from the CSR."""
    csr_der = _vector(vectors, name)
    r = enarx_steward.client.post("/", content=csr_der, headers=PKCS10)
    assert r.status_code == 200, r.text
    ca_der, leaf_der = wire.split_sequence(r.content, "Enarx answer")
    ca = x509.load_der_x509_certificate(ca_der)
    leaf = x509.load_der_x509_certificate(leaf_der)
    leaf.verify_directly_issued_by(ca)
    assert leaf.public_key() == x509.load_der_x509_csr(csr_der).public_key()
    # The certificate ends no later than the CRLs that vouched for the PCK chain.
    assert leaf.not_valid_after_utc == SGX_CRL_NEXT_UPDATE[name]
    ext = leaf.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    result = AttestationResult.from_der(ext.value)
    assert result.platform == "sgx"
    assert result.measurement.hex() == SGX_MRENCLAVE
    assert (result.debug, result.development) == (False, False)
    # No level of either TCB Info is UpToDate (README); Enarx's rule: listed advisories
    # accept the status they explain. Enarx evidence carries no QE Identity: said so.
    assert result.tcb_status == "OutOfDate"
    assert "qe-identity-not-appraised" in result.advisories
    assert all(a.startswith("INTEL-SA-") for a in result.advisories if a.isupper())


def test_enarx_sgx_csr_refused_with_a_stricter_policy(
    start_steward: StewardFactory, vectors: Path, tmp_path: Path
) -> None:
    text = (vectors / "enarx-steward" / "steward_testdata_policy.toml").read_text()
    strict = tmp_path / "strict.toml"
    without = text.replace('allowed_advisories = ["INTEL-SA-00289", ', "allowed_advisories = [")
    strict.write_text(without)
    steward = _start(start_steward, vectors, strict)
    name = "sgx_icelake.signed.tcb.crl.single.i5.csr"
    r = steward.client.post("/", content=_vector(vectors, name), headers=PKCS10)
    assert r.status_code == 403
    assert r.json()["check"] == "policy.advisories"
    assert "INTEL-SA-00289" in r.json()["detail"]


def test_tampered_enarx_csr_is_refused(enarx_steward: RunningSteward, vectors: Path) -> None:
    csr = bytearray(_vector(vectors, "snp_milan.signed.crl.csr"))
    # Flip a byte inside the 48-byte measurement (it sits in the signed CSR body).
    at = bytes(csr).index(bytes.fromhex("ff717ae719840c93c1fca3b7db964884"))
    csr[at] ^= 0x01
    r = enarx_steward.client.post("/", content=bytes(csr), headers=PKCS10)
    assert r.status_code == 401
    assert r.json()["check"] == "csr.signature"
    r = enarx_steward.client.post("/", content=bytes(csr[:-40]), headers=PKCS10)
    assert r.status_code == 400
    assert r.json()["check"] == "csr.parse"
    assert enarx_steward.steward.store.counts() == {"issued": 0, "revoked": 0, "rejected": 2}


def test_policy_mismatch_is_refused(
    start_steward: StewardFactory, vectors: Path, tmp_path: Path
) -> None:
    text = (vectors / "enarx-steward" / "steward_testdata_policy.toml").read_text()
    measurement = (
        "ff717ae719840c93c1fca3b7db96488454c3c21b43531488"
        "eecff51cfed3febcd91da8be87a4cbcbc52a3bae770987c3"
    )
    assert measurement in text
    policy = tmp_path / "other.toml"
    policy.write_text(text.replace(measurement, "00" * 48))
    s = _start(start_steward, vectors, policy)
    r = s.client.post("/", content=_vector(vectors, "snp_milan.signed.crl.csr"), headers=PKCS10)
    assert r.status_code == 403
    body = r.json()
    assert body["check"] == "policy.measurement"
    failed = [c["id"] for c in body["checks"] if not c["passed"]]
    assert failed == ["policy.measurement"]


def test_expired_endorsement_key_is_refused(start_steward: StewardFactory, vectors: Path) -> None:
    engine = _engine()
    s = start_steward(
        verifier=engine.verify_csr,
        policy=engine.load_policy(vectors / "enarx-steward" / "steward_testdata_policy.toml"),
        trust=engine.TrustStore.offline(vectors),
        clock=fixed_clock(datetime(2030, 1, 1, tzinfo=UTC)),  # the VCEK expired 2029-09-29
    )
    r = s.client.post("/", content=_vector(vectors, "snp_milan.signed.crl.csr"), headers=PKCS10)
    assert r.status_code == 401, r.text
    assert s.steward.store.counts()["issued"] == 0


#: After the nextUpdate (2023-05-09) of the Milan CRL the CSR carries, inside the VCEK's life.
AFTER_CRL = datetime(2023, 6, 1, tzinfo=UTC)


def test_stale_crl_is_refused_under_the_enarx_policy(
    start_steward: StewardFactory, vectors: Path
) -> None:
    engine = _engine()
    s = start_steward(
        verifier=engine.verify_csr,
        policy=engine.load_policy(vectors / "enarx-steward" / "steward_testdata_policy.toml"),
        trust=engine.TrustStore.offline(vectors),
        clock=fixed_clock(AFTER_CRL),
    )
    r = s.client.post("/", content=_vector(vectors, "snp_milan.signed.crl.csr"), headers=PKCS10)
    assert r.status_code == 401, r.text  # docs/steward.md: a stale CRL is not authentic
    body = r.json()
    assert body["check"] == "snp.crl"
    assert "ARK-Milan" in body["detail"] and "2023-05-09T23:00:00+00:00" in body["detail"]
    assert s.steward.store.counts()["issued"] == 0


def test_if_available_issues_with_an_advisory_and_a_warning(
    start_steward: StewardFactory,
    vectors: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = (vectors / "enarx-steward" / "steward_testdata_policy.toml").read_text()
    assert text.rstrip().splitlines()[-1].startswith("platform_info_flags")  # still in [snp]
    policy = tmp_path / "lenient.toml"
    policy.write_text(text.rstrip() + '\ncrl = "if-available"\n')
    engine = _engine()
    s = start_steward(
        verifier=engine.verify_csr,
        policy=engine.load_policy(policy),
        trust=engine.TrustStore.offline(vectors),
        clock=fixed_clock(AFTER_CRL),
    )
    with caplog.at_level("WARNING", logger="donjon.steward"):
        csr = _vector(vectors, "snp_milan.signed.crl.csr")
        r = s.client.post("/", content=csr, headers=PKCS10)
    assert r.status_code == 200, r.text
    leaf = x509.load_der_x509_certificate(wire.split_sequence(r.content, "answer")[1])
    ext = leaf.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    # Enarx CSRs carry no challenge: the certificate says so too.
    advisories = AttestationResult.from_der(ext.value).advisories
    assert advisories == ("revocation-not-checked", "evidence-not-fresh")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        "REVOCATION NOT CHECKED" in w and format(leaf.serial_number, "x") in w for w in warnings
    )


def test_cli_steward_with_the_clock_from_the_environment(
    vectors: Path, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """``donjon steward serve`` as an operator runs it, clock from $DONJON_STEWARD_NOW."""
    _engine()
    port = free_port()
    args = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve",
        "--dir", str(tmp_path / "state"), "--init", "--port", str(port),
        "--policy", str(vectors / "enarx-steward" / "steward_testdata_policy.toml"),
        "--trust-dir", str(vectors),
        "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key),
    ]  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    proc = StewardProcess(args, tmp_path / "log", env={**os.environ, NOW_ENV: "2023-02-01T00:00Z"})
    try:
        proc.wait_ready(url, tls_files.context)
        csr = _vector(vectors, "snp_milan.signed.crl.csr")
        r = httpx.post(url + "/", content=csr, headers=PKCS10, verify=tls_files.context)
        assert r.status_code == 200, r.text
        leaf = x509.load_der_x509_certificate(wire.split_sequence(r.content, "answer")[1])
        assert leaf.not_valid_after_utc == datetime(2023, 3, 1, tzinfo=UTC)
    finally:
        proc.kill()
    assert "clock fixed at 2023-02-01T00:00:00+00:00" in (tmp_path / "log").read_text()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mangled_enarx_csrs_are_always_4xx(
    enarx_steward: RunningSteward, vectors: Path, data: st.DataObject
) -> None:
    """Byte flips and truncations anywhere in a real CSR: a 4xx problem, never a 5xx."""
    csr = bytearray(_vector(vectors, "snp_milan.signed.crl.csr"))
    if data.draw(st.booleans(), label="truncate"):
        csr = csr[: data.draw(st.integers(0, len(csr) - 1), label="length")]
    else:
        at = data.draw(st.integers(0, len(csr) - 1), label="offset")
        csr[at] ^= data.draw(st.integers(1, 255), label="mask")
    r = enarx_steward.client.post("/", content=bytes(csr), headers=PKCS10)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["check"]


def test_a_lenient_crl_policy_is_announced_at_start(
    vectors: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from donjon.steward.bootstrap import StewardConfig, build_steward

    _engine()
    strict, lenient = tmp_path / "strict.toml", tmp_path / "lenient.toml"
    text = (vectors / "enarx-steward" / "steward_testdata_policy.toml").read_text().rstrip()
    strict.write_text(text + "\n")
    lenient.write_text(text + '\ncrl = "if-available"\n')
    for policy, announced in ((strict, False), (lenient, True)):
        caplog.clear()
        config = StewardConfig(
            state_dir=tmp_path / policy.stem, init=True, policy=policy, trust_dir=vectors, now=AT
        )
        with caplog.at_level("WARNING", logger="donjon.steward"):
            steward, _ = build_steward(config)
        steward.store.close()
        said = any("REVOCATION MAY GO UNCHECKED" in r.getMessage() for r in caplog.records)
        assert said is announced, policy.name
