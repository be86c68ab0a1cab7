"""Arm CCA tokens: the trustee vector against expected.json, signatures, binding, anchors,
reference values and the [cca] policy; synthetic tokens for every refusal."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from attest_fakes import make_csr, spki
from cca_fakes import IMPL_ID, INST_ID, RIM, FakeCca
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from donjon.attestation import Policy, TrustStore, oids, verify_csr
from donjon.attestation.cca.anchors import AnchorError, load_cpak, load_store, parse_store
from donjon.attestation.cca.evidence import encode_cca_evidence
from donjon.attestation.cca.token import parse_token
from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.cose import loads_strict
from donjon.attestation.csr import verify_evidence
from donjon.attestation.errors import (
    CcaLifecycleError,
    CcaPlatformSignatureError,
    CcaRakBindingError,
    CcaRealmSignatureError,
    CcaTrustAnchorError,
    MalformedEvidenceError,
    PlatformNotAllowedError,
    PolicyError,
    PolicyViolationError,
    ReportDataMismatchError,
    UnsupportedVersionError,
)
from donjon.attestation.registry import VerifyOptions
from donjon.attestation.verdict import Verdict
from donjon.attestation.verifiers import REGISTRY

TOKEN = "cca/trustee/cca-example-token.cbor"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
#: Claim keys -> the names `donjon attest show --json` uses (written by hand from the spec).
PLATFORM_NAMES = {
    "265": "profile",
    "10": "challenge",
    "2396": "implementation_id",
    "256": "instance_id",
    "2401": "config",
    "2402": "hash_algo",
    "2400": "verification_service",
}
REALM_NAMES = {
    "10": "challenge",
    "44235": "personalization_value",
    "44236": "hash_algo",
    "44237": "public_key",
    "44238": "initial_measurement",
    "44240": "public_key_hash_algo",
}
COMPONENT_NAMES = {"1": "type", "2": "measurement", "5": "signer_id", "6": "hash_algo"}


@pytest.fixture(scope="module")
def cca_vector(expected: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in expected["vectors"] if v["id"] == "cca-trustee-example")


def cca_form() -> Any:
    return next(f for f in REGISTRY.bare_formats if f.platform == "cca")


def policy(text: str = "", *, base: Path = Path(".")) -> Policy:
    return Policy.from_toml(
        f"[cca]\naccept_any_workload = true\n{text}", source="t.toml", base_dir=base
    )


def verify_token(
    token: bytes,
    policy_: Policy | None = None,
    *,
    cpak: Path | None = None,
    store: Path | None = None,
) -> Verdict:
    anchors = None
    if cpak is not None:
        anchors = load_cpak(cpak)
    if store is not None:
        anchors = load_store(store) if anchors is None else anchors.merged(load_store(store))
    material = {"cca_anchors": anchors} if anchors is not None else {}
    return verify_evidence(
        token,
        cca_form(),
        policy=policy_ or policy(),
        trust=TrustStore(),
        now=NOW,
        options=VerifyOptions(material=material),
    )


def check_ids(verdict: Verdict) -> list[str]:
    return [c.id for c in verdict.checks if c.passed]


# --- the real vector --------------------------------------------------------------------------


def test_every_claim_matches_expected(vectors: Path, cca_vector: dict[str, Any]) -> None:
    data = (vectors / TOKEN).read_bytes()
    token = parse_token(data).to_dict()
    computed = cca_vector["computed"]
    assert cbor2.loads(data).tag == computed["collection_tag"]
    platform = token["platform"]["claims"]
    for key, name in PLATFORM_NAMES.items():
        assert platform[name] == computed["platform_claims"][key], name
    assert platform["lifecycle"]["value"] == computed["platform_claims"]["2395"]
    assert platform["lifecycle"]["state"] == "secured"  # 0x3003: the 0x30xx range
    want_components = computed["platform_claims"]["2399"]
    assert len(platform["sw_components"]) == len(want_components) == 13
    for got, want in zip(platform["sw_components"], want_components, strict=True):
        for key, name in COMPONENT_NAMES.items():
            assert got[name] == want[key], name
        assert got["version"] is None
    realm = token["realm"]["claims"]
    for key, name in REALM_NAMES.items():
        assert realm[name] == computed["realm_claims"][key], name
    assert realm["extensible_measurements"] == computed["realm_claims"]["44239"]
    assert realm["profile"] is None  # legacy realm token: no profile claim
    alg = {-35: "ES384"}[computed["platform_sig"][1]]
    assert token["platform"]["algorithm"] == token["realm"]["algorithm"] == alg


@pytest.mark.parametrize("anchor", ["cpak", "store"])
def test_vector_verifies_with_its_cpak(vectors: Path, anchor: str) -> None:
    data = (vectors / TOKEN).read_bytes()
    if anchor == "cpak":
        verdict = verify_token(data, cpak=vectors / "cca/trustee/cpak-pub.json")
    else:
        verdict = verify_token(data, store=vectors / "cca/trustee/tastore.json")
    assert verdict.accepted, verdict.error
    assert verdict.platform == "cca"
    for check in (
        "cca.token",
        "cca.trust_anchor",
        "cca.platform_signature",
        "cca.realm_signature",
        "cca.rak_binding",
        "cca.lifecycle",
    ):
        assert check in check_ids(verdict)
    assert verdict.result is not None
    assert verdict.result.measurement.hex() == (
        "ae87fbf7f105e71a7827cb6f0896889c73d2beaf4830d4f9cb05e3e96c3fc7b4"
        "faa04caf36a26bd094cf9c7b738617e4c189aaee184dedda5d7a03c39dbdac7c"
    )
    assert (
        verdict.result.product == "7f454c4602010100000000000000000003003e00010000005058000000000000"
    )
    assert verdict.result.tcb_status == "NotAppraised"
    assert not verdict.result.development


def test_wrong_cpak_is_refused(vectors: Path, tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = tmp_path / "other.pem"
    pem.write_bytes(other.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    verdict = verify_token((vectors / TOKEN).read_bytes(), cpak=pem)
    assert not verdict.accepted
    assert verdict.reason == "cca.platform_signature"
    assert isinstance(verdict.error, CcaPlatformSignatureError)
    assert verdict.error.code == "cca.platform_signature"


def test_no_anchor_for_the_platform(vectors: Path, tmp_path: Path) -> None:
    store = FakeCca().tastore(tmp_path / "tastore.json")  # other IDs, other key
    verdict = verify_token((vectors / TOKEN).read_bytes(), store=store)
    assert verdict.reason == "cca.trust_anchor"
    assert isinstance(verdict.error, CcaTrustAnchorError)


def test_every_flipped_byte_is_refused(vectors: Path) -> None:
    data = (vectors / TOKEN).read_bytes()
    cpak = vectors / "cca/trustee/cpak-pub.json"
    refused = 0
    for index in range(0, len(data), 5):
        flipped = bytearray(data)
        flipped[index] ^= 0x01
        verdict = verify_token(bytes(flipped), cpak=cpak)
        assert not verdict.accepted, f"byte {index} flipped was accepted"
        refused += 1
    assert refused == (len(data) + 4) // 5


def test_flips_in_each_signed_part_hit_its_own_check(vectors: Path) -> None:
    data = bytearray((vectors / TOKEN).read_bytes())
    cpak = vectors / "cca/trustee/cpak-pub.json"
    # A byte inside the RMM measurement (platform payload) and inside the RIM (realm payload).
    rmm = bytes.fromhex("a1fb50e6c86fae1679ef3351296fd6713411a08cf8dd1790a4fd05fae8688164")
    rim = bytes.fromhex("ae87fbf7f105e71a7827cb6f0896889c")
    for needle, check in ((rmm, "cca.platform_signature"), (rim, "cca.realm_signature")):
        flipped = bytearray(data)
        flipped[data.index(needle) + 3] ^= 0x80
        verdict = verify_token(bytes(flipped), cpak=cpak)
        assert verdict.reason == check


# --- synthetic tokens: each refusal its own check ------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> tuple[FakeCca, Path]:
    cca = FakeCca()
    return cca, cca.tastore(tmp_path / "tastore.json")


def test_synthetic_token_verifies(fake: tuple[FakeCca, Path]) -> None:
    cca, store = fake
    verdict = verify_token(cca.token(), store=store)
    assert verdict.accepted, verdict.error


def test_realm_signed_by_another_key(fake: tuple[FakeCca, Path]) -> None:
    cca, store = fake
    impostor = FakeCca(cpak=cca.cpak)
    token = impostor.token(realm={44237: FakeCca().realm_claims()[44237]})
    verdict = verify_token(token, store=store)
    assert isinstance(verdict.error, CcaRealmSignatureError)


def test_platform_challenge_must_be_the_rak_hash(fake: tuple[FakeCca, Path]) -> None:
    cca, store = fake
    verdict = verify_token(cca.token(rak_hash=b"\x00" * 32), store=store)
    assert verdict.reason == "cca.rak_binding"
    assert isinstance(verdict.error, CcaRakBindingError)


@pytest.mark.parametrize(
    ("lifecycle", "allowed", "accepted"),
    [
        (0x3000, None, True),
        (0x40FF, None, False),  # non-CCA-platform-RoT debug
        (0x5001, None, False),
        (0x6000, None, False),  # decommissioned
        (0x40FF, '["secured", "non-cca-platform-rot-debug"]', True),
    ],
)
def test_lifecycle(
    fake: tuple[FakeCca, Path], lifecycle: int, allowed: str | None, accepted: bool
) -> None:
    cca, store = fake
    text = f"lifecycle = {allowed}\n" if allowed else ""
    verdict = verify_token(cca.token(platform={2395: lifecycle}), policy(text), store=store)
    assert verdict.accepted is accepted
    if not accepted:
        assert isinstance(verdict.error, CcaLifecycleError)
    else:
        assert verdict.result is not None and verdict.result.debug is (lifecycle >> 8 == 0x40)


@pytest.mark.parametrize(
    ("realm", "platform", "error", "fragment"),
    [
        ({}, {265: "tag:example,2099:unknown"}, UnsupportedVersionError, "profile"),
        ({265: "tag:arm.com,2024:realm#2.0.0"}, {}, UnsupportedVersionError, "realm profile"),
        ({44238: None}, {}, MalformedEvidenceError, "initial-measurement"),
        ({}, {2401: None}, MalformedEvidenceError, "config"),
        ({}, {2399: []}, MalformedEvidenceError, "sw-components"),
        ({}, {2399: [{1: "RMM", 5: b"\xbb" * 32}]}, MalformedEvidenceError, "measurement-value"),
        ({44239: [b"\x00" * 64] * 3}, {}, MalformedEvidenceError, "extensible-measurements"),
        ({44238: b"\x00" * 32}, {}, MalformedEvidenceError, "initial-measurement"),
        ({44236: "md5"}, {}, UnsupportedVersionError, "md5"),
        ({10: b"\x11" * 32}, {}, MalformedEvidenceError, "challenge"),
        ({44999: b"x"}, {}, MalformedEvidenceError, "unknown claim"),
        ({}, {256: b"\x02" + b"\x00" * 32}, MalformedEvidenceError, "UEID"),
        ({}, {2395: 0x7000}, MalformedEvidenceError, "lifecycle"),
        ({44237: b"\x04" + b"\x01" * 96}, {}, MalformedEvidenceError, "P-384"),
    ],
)
def test_malformed_claims(
    fake: tuple[FakeCca, Path],
    realm: dict[int, Any],
    platform: dict[int, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    cca, store = fake
    verdict = verify_token(cca.token(realm=realm, platform=platform), store=store)
    assert verdict.reason == "cca.token"
    assert isinstance(verdict.error, error)
    assert fragment in verdict.error.message


def test_trailing_bytes_and_duplicate_keys(fake: tuple[FakeCca, Path]) -> None:
    cca, store = fake
    verdict = verify_token(cca.token() + b"\x00", store=store)
    assert verdict.reason == "cca.token" and "trailing" in verdict.error.message  # type: ignore[union-attr]
    # A claims map that repeats the challenge key: cbor2 alone would keep the last value.
    realm = cca.realm_claims()
    payload = cbor2.dumps(realm)
    head = bytes([0xA0 + len(realm) + 1]) + cbor2.dumps(10) + cbor2.dumps(b"\x22" * 64)
    dup = head + payload[1:]
    assert cbor2.loads(dup)[10] == realm[10]  # the last one wins without the strict check
    with pytest.raises(MalformedEvidenceError, match="repeats a map key"):
        loads_strict(dup, "realm")
    with pytest.raises(MalformedEvidenceError, match="preferred serialization"):
        loads_strict(b"\x18\x01", "one")  # 1 encoded in two bytes


def test_realm_profile_1_with_cose_key_rak(fake: tuple[FakeCca, Path]) -> None:
    cca, store = fake
    numbers = cca.rak.public_key().public_numbers()
    cose_key = cbor2.dumps(
        {1: 2, -1: 2, -2: numbers.x.to_bytes(48, "big"), -3: numbers.y.to_bytes(48, "big")}
    )
    token = cca.token(realm={265: "tag:arm.com,2023:realm#1.0.0", 44237: cose_key})
    verdict = verify_token(token, store=store)
    assert verdict.accepted, verdict.error
    # The raw point is the legacy form only.
    bad = cca.token(realm={265: "tag:arm.com,2023:realm#1.0.0"})
    assert verify_token(bad, store=store).reason == "cca.token"


# --- [cca] policy ------------------------------------------------------------------------------


def test_rvstore_reference_values_match_the_vector(vectors: Path, tmp_path: Path) -> None:
    rv = vectors / "cca/trustee/rvstore.json"
    text = f'reference_values = "{rv}"\ntrust_anchors = "{vectors / "cca/trustee/tastore.json"}"\n'
    pol = Policy.from_toml("[cca]\n" + text, source="t.toml", base_dir=tmp_path)
    verdict = verify_token((vectors / TOKEN).read_bytes(), pol)
    assert verdict.accepted, verdict.error
    assert {"policy.sw_components", "policy.realm_reference", "policy.pinned"} <= set(
        check_ids(verdict)
    )
    assert verdict.result is not None and verdict.result.tcb_status == "MeetsMinimum"


def test_changed_reference_value_is_refused(vectors: Path, tmp_path: Path) -> None:
    doc = json.loads((vectors / "cca/trustee/rvstore.json").read_text())
    doc["platform"][0]["sw-components"][8]["measurement-value"] = "00" * 32  # RMM
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps(doc))
    pol = policy(f'reference_values = "{rv}"\n')
    verdict = verify_token(
        (vectors / TOKEN).read_bytes(), pol, cpak=vectors / "cca/trustee/cpak-pub.json"
    )
    assert verdict.reason == "policy.sw_components"
    assert isinstance(verdict.error, PolicyViolationError)
    assert "RMM" in verdict.error.message


@pytest.mark.parametrize(
    ("text", "check"),
    [
        (f'rim = ["{"00" * 64}"]', "policy.rim"),
        (f'rem2 = ["{"11" * 64}"]', "policy.rem2"),
        (f'personalization_value = ["{"22" * 64}"]', "policy.personalization_value"),
        (f'implementation_ids = ["{"33" * 32}"]', "policy.implementation_id"),
        ('platform_config = ["00"]', "policy.platform_config"),
        (
            'sw_components = [{ type = "RMM", measurement = "' + "aa" * 32 + '" }]',
            "policy.sw_components",
        ),
    ],
)
def test_pins_refuse_other_values(vectors: Path, text: str, check: str) -> None:
    verdict = verify_token(
        (vectors / TOKEN).read_bytes(), policy(text), cpak=vectors / "cca/trustee/cpak-pub.json"
    )
    assert verdict.reason == check


def test_pins_accept_the_vector(vectors: Path) -> None:
    text = (
        'rim = ["ae87fbf7f105e71a7827cb6f0896889c73d2beaf4830d4f9cb05e3e96c3fc7b4'
        'faa04caf36a26bd094cf9c7b738617e4c189aaee184dedda5d7a03c39dbdac7c"]\n'
        f'rem0 = ["{"00" * 64}"]\n'
        'implementation_ids = ["7f454c46020101000000000000000000'
        '03003e00010000005058000000000000"]\n'
        'platform_config = ["cfcfcfcf"]\n'
    )
    verdict = verify_token(
        (vectors / TOKEN).read_bytes(), policy(text), cpak=vectors / "cca/trustee/cpak-pub.json"
    )
    assert verdict.accepted, verdict.error
    assert "policy.rim" in check_ids(verdict)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('lifecycle = ["debug"]', "unknown state"),
        ('rim = ["abcd"]', "expected 32 or 48 or 64"),
        ('trust_anchors = "missing.json"', "cannot read"),
        ('sw_components = [{ type = "RMM" }]', "measurement-value"),
        ("colour = 1", "unknown key"),
    ],
)
def test_policy_section_is_strict(text: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=fragment):
        Policy.from_toml(f"[cca]\n{text}\n", source="t.toml", base_dir=tmp_path)


def test_unpinned_section_is_named(tmp_path: Path) -> None:
    pol = Policy.from_toml("[cca]\n", source="t.toml", base_dir=tmp_path)
    assert any("[cca] pins nothing" in line for line in pol.unpinned())


def test_anchor_store_is_strict(tmp_path: Path) -> None:
    with pytest.raises(AnchorError, match="instance-id"):
        parse_store(b'[{"implementation-id": "00", "pkey": {}}]', "s.json")
    jwk = {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}
    with pytest.raises(AnchorError, match="JWK x"):
        parse_store(
            json.dumps(
                [{"implementation-id": IMPL_ID.hex(), "instance-id": INST_ID.hex(), "pkey": jwk}]
            ).encode(),
            "s.json",
        )
    private = {**jwk, "d": "AA"}
    with pytest.raises(AnchorError, match="private"):
        parse_store(
            json.dumps(
                [
                    {
                        "implementation-id": IMPL_ID.hex(),
                        "instance-id": INST_ID.hex(),
                        "pkey": private,
                    }
                ]
            ).encode(),
            "s.json",
        )


# --- CSRs: the realm challenge binds the key and the workload ----------------------------------


def claims_for(nonce: bytes | None = None) -> WorkloadClaims:
    return WorkloadClaims(hashlib.sha256(b"wasm").digest(), b"", "demo", nonce=nonce)


def cca_csr(cca: FakeCca, *, good_binding: bool = True) -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    claims = claims_for(b"\x42" * 32)
    binding = hashlib.sha512(spki(key) + claims.to_der()).digest()
    token = cca.token(binding if good_binding else b"\x00" * 64)
    csr, _ = make_csr(
        [
            (oids.EVIDENCE_CCA, encode_cca_evidence(token), False),
            (oids.WORKLOAD_CLAIMS, claims.to_der(), False),
        ],
        key,
    )
    return csr


def test_csr_with_a_bound_token_is_accepted(fake: tuple[FakeCca, Path], tmp_path: Path) -> None:
    cca, store = fake
    pol = Policy.from_toml(
        f'[cca]\ntrust_anchors = "{store}"\nrim = ["{RIM.hex()}"]\n',
        source="t.toml",
        base_dir=tmp_path,
    )
    verdict = verify_csr(cca_csr(cca), policy=pol, trust=TrustStore(), now=NOW)
    assert verdict.accepted, verdict.error
    assert verdict.platform == "cca"
    assert "binding.report_data" in check_ids(verdict)
    assert verdict.result is not None and verdict.result.measurement == RIM

    wrong = verify_csr(cca_csr(cca, good_binding=False), policy=pol, trust=TrustStore(), now=NOW)
    assert wrong.reason == "binding.report_data"
    assert isinstance(wrong.error, ReportDataMismatchError)


def test_csr_without_cca_section_is_refused(fake: tuple[FakeCca, Path]) -> None:
    cca, _ = fake
    pol = Policy.from_toml(
        "[snp]\naccept_any_workload = true\n", source="t.toml", base_dir=Path(".")
    )
    verdict = verify_csr(cca_csr(cca), policy=pol, trust=TrustStore(), now=NOW)
    assert verdict.reason == "platform.allowed"
    assert isinstance(verdict.error, PlatformNotAllowedError)


def test_sim_cpak_gives_a_development_result(fake: tuple[FakeCca, Path], tmp_path: Path) -> None:
    cca, store = fake
    pem = tmp_path / "sim-cpak.pem"
    pem.write_bytes(cca.cpak_pem())
    pol = Policy.from_toml(
        f'[sim]\ncca_cpak = "{pem}"\naccept_any_workload = true\n',
        source="t.toml",
        base_dir=tmp_path,
    )
    verdict = verify_csr(cca_csr(cca), policy=pol, trust=TrustStore(), now=NOW)
    assert verdict.accepted, verdict.error
    assert verdict.platform == "sim"
    assert verdict.result is not None
    assert verdict.result.development and verdict.result.product == "cca"

    # The same platform listed in a real store is judged as CCA, never as the simulator ...
    both = Policy.from_toml(
        f'[sim]\ncca_cpak = "{pem}"\naccept_any_workload = true\n'
        f'[cca]\ntrust_anchors = "{store}"\naccept_any_workload = true\n',
        source="t.toml",
        base_dir=tmp_path,
    )
    real = verify_csr(cca_csr(cca), policy=both, trust=TrustStore(), now=NOW)
    assert real.accepted and real.platform == "cca"
    # ... and a token signed by another key for those IDs is refused, not taken as sim.
    impostor = FakeCca(rak=cca.rak)
    forged = verify_csr(cca_csr(impostor), policy=both, trust=TrustStore(), now=NOW)
    assert forged.reason == "cca.platform_signature"


def test_sim_cpak_is_never_enough_for_a_real_anchor_without_cca(
    fake: tuple[FakeCca, Path], tmp_path: Path
) -> None:
    cca, _ = fake
    pol = Policy.from_toml(
        f'[sim]\ncca_cpak = "{tmp_path / "none.pem"}"\n', source="t.toml", base_dir=tmp_path
    )
    verdict = verify_csr(cca_csr(cca), policy=pol, trust=TrustStore(), now=NOW)
    assert verdict.reason == "cca.trust_anchor"
    assert isinstance(verdict.error, PlatformNotAllowedError)
    assert "cannot read" in verdict.error.message
