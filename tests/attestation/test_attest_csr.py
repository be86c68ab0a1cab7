"""verify_csr: the Enarx Steward vectors, Donjon's binding and extensions, and refusals."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from attest_fakes import FakeAmd, at, make_csr, spki
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import (
    CrlStaleError,
    CsrError,
    MalformedEvidenceError,
    PlatformNotAllowedError,
    Policy,
    PolicyViolationError,
    ReportDataMismatchError,
    TrustStore,
    load_policy,
    oids,
    verify_csr,
)
from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.attestation.evidence import DER_NULL, decode_enarx_snp, encode_enarx_snp, encode_sim

STEWARD_TIME = at("2023-02-01T00:00:00Z")  # enarx-steward/README.md: inside every window
# Facts about the Steward vector (enarx-steward/README.md).
STEWARD_MEASUREMENT = (
    "ff717ae719840c93c1fca3b7db96488454c3c21b"
    "43531488eecff51cfed3febcd91da8be87a4cbcbc52a3bae770987c3"
)
STEWARD_ID_KEY = (
    "d71a4d1da440d515cd69fbb1314acf4221726e82"
    "768a8bf6e4a4063ed542ac78349c8145b4666a4242a91a374387b473"
)


def policy(text: str = "", base_dir: Path = Path(".")) -> Policy:
    """A test policy whose [snp] section accepts any workload explicitly (none: just that)."""
    text = text or "[snp]"
    if "[snp]" in text and "accept_any_workload" not in text:
        text = text.replace("[snp]", "[snp]\naccept_any_workload = true", 1)
    return Policy.from_toml(text, source="test-policy.toml", base_dir=base_dir)


@pytest.fixture(scope="module")
def steward_csr(vectors: Path) -> bytes:
    return (vectors / "enarx-steward/snp_milan.signed.crl.csr").read_bytes()


@pytest.fixture(scope="module")
def steward_policy(vectors: Path) -> Policy:
    return load_policy(vectors / "enarx-steward/steward_testdata_policy.toml")


def test_enarx_steward_csr_verifies(
    steward_csr: bytes, steward_policy: Policy, amd_trust: TrustStore, vectors: Path
) -> None:
    verdict = verify_csr(steward_csr, policy=steward_policy, trust=amd_trust, now=STEWARD_TIME)
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert verdict.platform == "snp"
    assert verdict.reason is None and verdict.error is None
    assert verdict.csr is not None
    passed = {c.id for c in verdict.checks if c.passed}
    for check in (
        "csr.signature",
        "snp.signature",
        "snp.chain",
        "snp.revocation",
        "binding.report_data",
        "policy.measurement",
        "policy.signer",
        "policy.id_key_digest",
        "policy.abi",
        "policy.policy_flags",
        "policy.platform_info",
    ):
        assert check in passed, check
    revocation = next(c for c in verdict.checks if c.id == "snp.revocation")
    assert "CRL" in revocation.reason and "checked" in revocation.reason
    ext = verdict.csr.extensions.get_extension_for_oid(oids.ENARX_SNP).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    assert verdict.evidence_sha256 == hashlib.sha256(ext.value).hexdigest()
    result = verdict.result
    assert result is not None
    assert result.measurement.hex() == STEWARD_MEASUREMENT
    assert result.tcb == "bl=2 tee=0 snp=6 ucode=93"
    assert result.platform == "snp" and result.product == "Milan"
    assert not result.debug and not result.development
    policy_bytes = (vectors / "enarx-steward/steward_testdata_policy.toml").read_bytes()
    assert result.policy_id == hashlib.sha256(policy_bytes).hexdigest()
    assert result.evaluated_at == STEWARD_TIME
    assert AttestationResult.from_der(result.to_der()) == result
    # The Milan CRL's nextUpdate (2023-05-09) bounds the certificate's life.
    assert verdict.not_after_limit is not None
    assert verdict.not_after_limit.date().isoformat() == "2023-05-09"
    # The Enarx policy has no crl key: the default "require" applied, and was met.
    snp = steward_policy.snp
    assert snp is not None and snp.crl == "require" and verdict.crl_mode == "require"
    # An Enarx CSR carries no challenge: accepted by default, and the certificate says so.
    assert result.advisories == ("evidence-not-fresh",)
    fresh = next(c for c in verdict.checks if c.id == "freshness.nonce")
    assert fresh.passed and "Enarx CSR" in fresh.reason


def test_the_csr_crl_list_alone_satisfies_require(
    steward_csr: bytes, steward_policy: Policy, vectors: Path, tmp_path: Path
) -> None:
    # A trust directory with the Milan chain but no CRL: only the CSR's CrlList has one.
    (tmp_path / "milan.pem").write_bytes((vectors / "amd-roots/ask_ark_milan.pem").read_bytes())
    trust = TrustStore.offline(tmp_path)
    verdict = verify_csr(steward_csr, policy=steward_policy, trust=trust, now=STEWARD_TIME)
    assert verdict.accepted, (verdict.reason, verdict.error)
    revocation = next(c for c in verdict.checks if c.id == "snp.revocation")
    assert revocation.reason == "ARK-Milan CRL of 2022-05-09 checked"
    # After the CRL's nextUpdate the same CSR is refused, as stale, not as missing.
    late = verify_csr(
        steward_csr, policy=steward_policy, trust=trust, now=at("2023-06-01T00:00:00Z")
    )
    assert late.reason == "snp.crl"
    assert isinstance(late.error, CrlStaleError)
    assert "2023-05-09T23:00:00+00:00" in late.error.message


@pytest.mark.parametrize(
    ("snp_section", "check"),
    [
        # Steward's own negative cases: bad author key, abi > 254.0, denied id_key_digest.
        ('signer = ["' + "00" * 48 + '"]', "policy.signer"),
        ('abi = ">254.0"', "policy.abi"),
        (f'id_key_digest_blacklist = ["{STEWARD_ID_KEY}"]', "policy.id_key_digest_deny"),
        (f'hash_blacklist = ["{STEWARD_MEASUREMENT}"]', "policy.measurement_deny"),
        ('hash = ["' + "11" * 48 + '"]', "policy.measurement"),
        ('policy_flags = ["SMT", "SingleSocket"]', "policy.policy_flags"),
        ('platform_info_flags = "TSME"', "policy.platform_info"),
        ("min_guest_svn = 2", "policy.guest_svn"),
        ('host_data = ["' + "22" * 32 + '"]', "policy.host_data"),
        ('allowed_workloads = ["' + "33" * 32 + '"]', "policy.workload"),
        ("vmpl = 1", "policy.vmpl"),
        ('products = ["Genoa"]', "policy.product"),
        ('signing_keys = ["VLEK"]', "policy.signing_key"),
    ],
)
def test_policy_refusals(
    snp_section: str, check: str, steward_csr: bytes, amd_trust: TrustStore
) -> None:
    verdict = verify_csr(
        steward_csr, policy=policy(f"[snp]\n{snp_section}"), trust=amd_trust, now=STEWARD_TIME
    )
    assert not verdict.accepted
    assert verdict.reason == check
    assert verdict.error is not None
    assert verdict.result is None


def test_policy_checks_all_run(steward_csr: bytes, amd_trust: TrustStore) -> None:
    text = '[snp]\nabi = ">254.0"\nhash = ["' + "11" * 48 + '"]'
    verdict = verify_csr(steward_csr, policy=policy(text), trust=amd_trust, now=STEWARD_TIME)
    failed = [c.id for c in verdict.checks if not c.passed]
    assert failed == ["policy.abi", "policy.measurement"]
    assert verdict.reason == "policy.abi"
    assert isinstance(verdict.error, PolicyViolationError)


def test_evidence_for_another_key_is_refused(steward_csr: bytes, amd_trust: TrustStore) -> None:
    csr = x509.load_der_x509_csr(steward_csr)
    ext = csr.extensions.get_extension_for_oid(oids.ENARX_SNP).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    stolen, _ = make_csr([(oids.ENARX_SNP, ext.value, False)])  # same evidence, new key
    verdict = verify_csr(stolen, policy=policy(), trust=amd_trust, now=STEWARD_TIME)
    assert verdict.reason == "binding.report_data"
    assert isinstance(verdict.error, ReportDataMismatchError)
    assert verdict.error.code == "binding.report_data"


def test_tampered_csr_signature(steward_csr: bytes, amd_trust: TrustStore) -> None:
    data = bytearray(steward_csr)
    data[-5] ^= 0x01  # inside the ECDSA signature at the end of the CSR
    verdict = verify_csr(bytes(data), policy=policy(), trust=amd_trust, now=STEWARD_TIME)
    assert not verdict.accepted
    assert verdict.reason in ("csr.signature", "csr.parse")


@pytest.mark.parametrize("data", [b"", b"\x30\x03\x02\x01\x00", b"garbage" * 100])
def test_garbage_is_a_verdict_not_an_exception(data: bytes, amd_trust: TrustStore) -> None:
    verdict = verify_csr(data, policy=policy(), trust=amd_trust, now=STEWARD_TIME)
    assert not verdict.accepted
    assert verdict.reason == "csr.parse"
    assert isinstance(verdict.error, CsrError)
    assert verdict.error.code == "csr.malformed"


def test_sgx_csr_needs_an_sgx_section(vectors: Path, amd_trust: TrustStore) -> None:
    data = (vectors / "enarx-steward/sgx_icelake.signed.tcb.crl.single.i5.csr").read_bytes()
    verdict = verify_csr(data, policy=policy(), trust=amd_trust, now=STEWARD_TIME)
    assert verdict.platform == "sgx"
    assert verdict.reason == "platform.allowed"
    assert isinstance(verdict.error, PlatformNotAllowedError)


def test_tdx_garbage_is_malformed_evidence(amd_trust: TrustStore) -> None:
    csr, _ = make_csr([(oids.EVIDENCE_TDX, b"\x04\x00", False)])
    tdx = Policy.from_toml("[tdx]\naccept_any_workload = true\n", source="t", base_dir=Path())
    verdict = verify_csr(csr, policy=tdx, trust=amd_trust, now=STEWARD_TIME)
    assert verdict.platform == "tdx"
    assert verdict.reason == "evidence.format"
    assert isinstance(verdict.error, MalformedEvidenceError)


def test_extension_rules(amd_trust: TrustStore) -> None:
    cases = [
        ([], "csr.evidence_count"),
        (
            [(oids.EVIDENCE_NIL, DER_NULL, False), (oids.ENARX_KVM, b"", False)],
            "csr.evidence_count",
        ),
        (
            [(oids.EVIDENCE_NIL, DER_NULL, False), (x509.ObjectIdentifier("1.2.3.4"), b"", False)],
            "csr.unknown_extension",
        ),
        (
            [(oids.EVIDENCE_NIL, DER_NULL, False), (x509.ObjectIdentifier("1.2.3.4"), b"", True)],
            "csr.unknown_extension",
        ),
        ([(oids.EVIDENCE_NIL, DER_NULL, True)], "csr.critical"),
    ]
    nil_ok = policy("[nil]\nallow = true")
    for extensions, code in cases:
        csr, _ = make_csr(extensions)
        verdict = verify_csr(csr, policy=nil_ok, trust=amd_trust, now=STEWARD_TIME)
        assert verdict.reason == "csr.extensions", code
        assert isinstance(verdict.error, CsrError)
        assert verdict.error.code == code


@pytest.mark.parametrize(
    ("platform", "oid", "value"),
    [
        ("nil", oids.EVIDENCE_NIL, DER_NULL),
        ("kvm", oids.ENARX_KVM, b""),
    ],
)
def test_development_platforms_need_an_allowance(
    platform: str, oid: x509.ObjectIdentifier, value: bytes, amd_trust: TrustStore
) -> None:
    csr, _ = make_csr([(oid, value, False)])
    refused = verify_csr(csr, policy=policy(), trust=amd_trust, now=STEWARD_TIME)
    assert refused.reason == "platform.allowed"
    assert isinstance(refused.error, PlatformNotAllowedError)
    allowed = verify_csr(
        csr, policy=policy(f"[{platform}]\nallow = true"), trust=amd_trust, now=STEWARD_TIME
    )
    assert allowed.accepted
    assert allowed.platform == platform
    assert allowed.result is not None
    assert allowed.result.development is True and allowed.result.platform == platform
    bad, _ = make_csr([(oid, b"\x05\x01\x00", False)])
    malformed = verify_csr(
        bad, policy=policy(f"[{platform}]\nallow = true"), trust=amd_trust, now=STEWARD_TIME
    )
    assert malformed.reason == "evidence.format"


# --- the simulated TEE, through the same SNP code path ------------------------------------


#: One challenge for the module's sim CSRs, so that a test can compare claims it made.
_NONCE = os.urandom(32)


def _claims() -> WorkloadClaims:
    return WorkloadClaims(
        wasm_sha256=hashlib.sha256(b"main.wasm").digest(),
        config_sha256=b"",
        package_name="demo",
        nonce=_NONCE,  # a challenge; that the Steward gave it is the Steward's check
    )


def _sim_csr(
    fake: FakeAmd, *, bind_to: ec.EllipticCurvePrivateKey | None = None, debug: bool = False
) -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    claims = _claims().to_der()
    report_data = hashlib.sha512(spki(bind_to or key) + claims).digest()
    policy_bits = (1 << 17) | (1 << 16) | ((1 << 19) if debug else 0)
    from donjon.attestation.snp.report import GuestPolicy

    raw = fake.sign(fake.report(report_data=report_data, policy=GuestPolicy(policy_bits)))
    value = encode_sim(raw, fake.vcek, fake.ask, fake.ark)
    csr, _ = make_csr(
        [(oids.EVIDENCE_SIM, value, False), (oids.WORKLOAD_CLAIMS, claims, False)], key=key
    )
    return csr


def _sim_policy(fake: FakeAmd, tmp_path: Path, extra: str = "") -> Policy:
    (tmp_path / "sim-ark.pem").write_bytes(fake.ark.public_bytes(Encoding.PEM))
    return policy(f'[sim]\ntrust = "sim-ark.pem"\n{extra}', base_dir=tmp_path)


def test_sim_evidence_with_donjon_binding(fake_milan: FakeAmd, tmp_path: Path) -> None:
    csr = _sim_csr(fake_milan)
    now = at("2025-01-01T00:00:00Z")
    verdict = verify_csr(csr, policy=_sim_policy(fake_milan, tmp_path), trust=TrustStore(), now=now)
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert verdict.platform == "sim"
    binding = next(c for c in verdict.checks if c.id == "binding.report_data")
    assert "SHA-512" in binding.reason
    for check in ("snp.signature", "snp.chain", "snp.vcek_match", "sim.root"):
        assert check in {c.id for c in verdict.checks if c.passed}
    assert verdict.result is not None
    assert verdict.result.development is True and verdict.result.platform == "sim"
    assert verdict.result.workload == _claims()
    # The simulator publishes no CRL: visible in the checks and in the certificate claims.
    assert verdict.crl_mode == "if-available" and verdict.revocation_checked is False
    revocation = next(c for c in verdict.checks if c.id == "snp.revocation")
    assert revocation.passed and revocation.reason.startswith("NOT CHECKED")
    assert verdict.result.advisories == ("revocation-not-checked",)
    allowed = _sim_policy(
        fake_milan, tmp_path, f'allowed_workloads = ["{hashlib.sha256(b"main.wasm").hexdigest()}"]'
    )
    assert verify_csr(csr, policy=allowed, trust=TrustStore(), now=now).accepted


def test_sim_evidence_needs_explicit_trust(fake_milan: FakeAmd, tmp_path: Path) -> None:
    csr = _sim_csr(fake_milan)
    now = at("2025-01-01T00:00:00Z")
    for text in ("", "[sim]\nallow_debug = false"):
        verdict = verify_csr(csr, policy=policy(text), trust=TrustStore(), now=now)
        assert verdict.reason == "platform.allowed"
        assert isinstance(verdict.error, PlatformNotAllowedError)
        assert "[sim] trust" in verdict.error.message


def test_sim_evidence_from_another_simulator(fake_milan: FakeAmd, tmp_path: Path) -> None:
    from attest_fakes import make_amd

    other = make_amd("Milan")
    verdict = verify_csr(
        _sim_csr(other),
        policy=_sim_policy(fake_milan, tmp_path),
        trust=TrustStore(),
        now=at("2025-01-01T00:00:00Z"),
    )
    assert verdict.reason == "sim.root"
    assert verdict.error is not None and verdict.error.code == "chain.fingerprint"


def test_sim_binding_and_debug(fake_milan: FakeAmd, tmp_path: Path) -> None:
    now = at("2025-01-01T00:00:00Z")
    sim_policy = _sim_policy(fake_milan, tmp_path)
    wrong = _sim_csr(fake_milan, bind_to=ec.generate_private_key(ec.SECP384R1()))
    verdict = verify_csr(wrong, policy=sim_policy, trust=TrustStore(), now=now)
    assert isinstance(verdict.error, ReportDataMismatchError)
    debug = _sim_csr(fake_milan, debug=True)
    verdict = verify_csr(debug, policy=sim_policy, trust=TrustStore(), now=now)
    assert verdict.reason == "snp.debug"
    lenient = _sim_policy(fake_milan, tmp_path, "allow_debug = true")
    assert verify_csr(debug, policy=lenient, trust=TrustStore(), now=now).accepted


def test_real_amd_evidence_cannot_pose_as_sim_and_vice_versa(
    fake_milan: FakeAmd, tmp_path: Path, amd_trust: TrustStore
) -> None:
    # A sim report carried in the Enarx SNP extension must chain to a pinned AMD root.
    raw = fake_milan.sign(fake_milan.report())
    csr, _ = make_csr([(oids.ENARX_SNP, encode_enarx_snp(raw, fake_milan.vcek), False)])
    verdict = verify_csr(csr, policy=policy(), trust=amd_trust, now=at("2025-01-01T00:00:00Z"))
    assert not verdict.accepted
    assert verdict.reason == "snp.chain"


def test_enarx_evidence_round_trip(steward_csr: bytes) -> None:
    ext = x509.load_der_x509_csr(steward_csr).extensions.get_extension_for_oid(oids.ENARX_SNP)
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    value = ext.value.value
    evidence = decode_enarx_snp(value)
    assert len(evidence.report) == 1184 and len(evidence.crls) == 2
    # README: CRL URLs are the KDS Genoa and Milan CRLs, in that order.
    urls = [
        "https://kdsintf.amd.com/vcek/v1/Genoa/crl",
        "https://kdsintf.amd.com/vcek/v1/Milan/crl",
    ]
    assert evidence.endorsement is not None
    rebuilt = encode_enarx_snp(
        evidence.report, evidence.endorsement, list(zip(urls, evidence.crls, strict=True))
    )
    assert rebuilt == value
