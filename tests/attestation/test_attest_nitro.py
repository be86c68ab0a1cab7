"""AWS Nitro attestation documents: the evervault vectors against expected.json and their
test specs, the pinned AWS root, time, debug enclaves, RA-TLS certificates, and CSRs."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from attest_fakes import make_csr, spki
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from donjon.attestation import Policy, TrustStore, oids, verify_csr
from donjon.attestation.claims import WorkloadClaims
from donjon.attestation.csr import verify_evidence
from donjon.attestation.errors import (
    CertificateExpiredError,
    ChainError,
    FingerprintMismatchError,
    MalformedEvidenceError,
    NitroDebugError,
    NitroSignatureError,
    NitroTimestampError,
    PlatformNotAllowedError,
    PolicyError,
    PolicyViolationError,
    ReportDataMismatchError,
    UnsupportedVersionError,
)
from donjon.attestation.nitro.chain import verify_nitro_chain
from donjon.attestation.nitro.document import parse_document
from donjon.attestation.nitro.evidence import encode_nitro_evidence
from donjon.attestation.registry import BareFormat, VerifyOptions
from donjon.attestation.verdict import Verdict
from donjon.attestation.verifiers import REGISTRY
from support.nitro import cert, make_nitro, sign_document

VALID = "nitro/evervault/valid-attestation-doc.cose"
DEBUG = "nitro/evervault/debug-mode-attestation-doc.cose"
#: The AWS root's SHA-256 (SOURCES.md, aws_nitro_root.pem), written by hand.
AWS_ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"


def form(name: str) -> BareFormat:
    return next(f for f in REGISTRY.bare_formats if f.name == name)


DOC_FORM = "AWS Nitro attestation document"
CERT_FORM = "RA-TLS certificate carrying a Nitro document"


def policy(text: str = "") -> Policy:
    return Policy.from_toml(
        f"[nitro]\naccept_any_workload = true\n{text}", source="t.toml", base_dir=Path(".")
    )


def verify_bare(
    data: bytes,
    *,
    trust: TrustStore | None = None,
    at: datetime | None = None,
    pol: Policy | None = None,
    form_name: str = DOC_FORM,
) -> Verdict:
    material = {"nitro_time": "now" if at else "document"}
    return verify_evidence(
        data,
        form(form_name),
        policy=pol or policy(),
        trust=trust or TrustStore(),
        now=at or datetime.now(UTC),
        options=VerifyOptions(material=material),
    )


def passed(verdict: Verdict) -> dict[str, str]:
    return {c.id: c.reason for c in verdict.checks if c.passed}


@pytest.fixture(scope="module")
def nitro_trust(vectors: Path) -> TrustStore:
    return TrustStore.offline(vectors / "nitro")


@pytest.fixture(scope="module")
def nitro_vectors(expected: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["evidence"]: v for v in expected["vectors"] if v["platform"] == "aws-nitro"}


def window(vector: dict[str, Any]) -> tuple[datetime, datetime]:
    start, end = (datetime.fromisoformat(t) for t in vector["computed"]["validity_window"])
    return start, end


# --- the evervault vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [VALID, DEBUG])
def test_fields_match_expected(
    vectors: Path, nitro_vectors: dict[str, dict[str, Any]], path: str
) -> None:
    computed = nitro_vectors[path]["computed"]
    doc = parse_document((vectors / path).read_bytes())
    shown = doc.to_dict()
    assert shown["module_id"] == computed["module_id"]
    assert shown["timestamp_ms"] == computed["timestamp_ms"]
    assert shown["digest"] == computed["digest"]
    for index, value in computed["pcrs"].items():
        assert shown["pcrs"][index] == value
    for name in ("public_key", "user_data", "nonce"):
        assert shown[name] == computed[name]
    assert {-35: "ES384"}[computed["alg"]["1"]] == shown["algorithm"]
    leaf = x509.load_der_x509_certificate(doc.certificate)
    start, end = window(nitro_vectors[path])
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (start, end)


def test_valid_document_verifies_at_its_time(vectors: Path, nitro_trust: TrustStore) -> None:
    verdict = verify_bare((vectors / VALID).read_bytes(), trust=nitro_trust)
    assert verdict.accepted, verdict.error
    checks = passed(verdict)
    assert "the trust directory" in checks["nitro.chain"]
    assert checks["nitro.chain"].startswith("aws.nitro-enclaves -> ")
    assert "document's timestamp 2022-10-13T08:58:02" in checks["nitro.time"]
    assert {"nitro.signature", "nitro.timestamp", "nitro.debug"} <= set(checks)
    result = verdict.result
    assert result is not None and result.platform == "nitro"
    assert result.advisories == ("hypervisor-trusted", "revocation-not-checked")
    assert result.measurement.hex().startswith("f4d48b81a460c991")
    assert verdict.not_after_limit == datetime(2022, 10, 13, 11, 58, 2, tzinfo=UTC)


def test_root_from_the_document_when_the_trust_dir_lacks_it(vectors: Path) -> None:
    verdict = verify_bare((vectors / VALID).read_bytes())
    assert verdict.accepted, verdict.error
    assert "pinned fingerprint" in passed(verdict)["nitro.chain"]


def test_trust_dir_root_is_pinned(vectors: Path) -> None:
    store = TrustStore.offline(vectors / "nitro")
    root = store.pinned_root(AWS_ROOT_SHA256)
    assert root is not None
    assert root.fingerprint(hashes.SHA256()).hex() == AWS_ROOT_SHA256


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=1), True),
        (timedelta(hours=2, minutes=59), True),
        (timedelta(hours=3, seconds=5), False),  # the leaf lives three hours
        (timedelta(seconds=-5), False),
    ],
)
def test_time_window(
    vectors: Path,
    nitro_trust: TrustStore,
    nitro_vectors: dict[str, dict[str, Any]],
    offset: timedelta,
    accepted: bool,
) -> None:
    start, _ = window(nitro_vectors[VALID])
    verdict = verify_bare((vectors / VALID).read_bytes(), trust=nitro_trust, at=start + offset)
    assert verdict.accepted is accepted
    if not accepted:
        assert verdict.reason in ("nitro.validity", "nitro.timestamp")
        assert isinstance(verdict.error, CertificateExpiredError | NitroTimestampError)


def test_debug_document_is_genuine_but_refused(vectors: Path, nitro_trust: TrustStore) -> None:
    data = (vectors / DEBUG).read_bytes()
    refused = verify_bare(data, trust=nitro_trust)
    assert refused.reason == "nitro.debug"
    assert isinstance(refused.error, NitroDebugError)
    assert {"nitro.chain", "nitro.signature"} <= set(passed(refused))
    allowed = verify_bare(data, trust=nitro_trust, pol=policy("allow_debug = true"))
    assert allowed.accepted, allowed.error
    assert allowed.result is not None and allowed.result.debug


def test_every_flipped_byte_is_refused(vectors: Path, nitro_trust: TrustStore) -> None:
    data = (vectors / VALID).read_bytes()
    for index in range(0, len(data), 11):
        flipped = bytearray(data)
        flipped[index] ^= 0x04
        verdict = verify_bare(bytes(flipped), trust=nitro_trust)
        assert not verdict.accepted, f"byte {index} flipped was accepted"


def test_flipped_pcr_fails_the_signature(vectors: Path, nitro_trust: TrustStore) -> None:
    data = bytearray((vectors / VALID).read_bytes())
    at = data.index(bytes.fromhex("f4d48b81a460c991"))
    data[at] ^= 0xFF
    verdict = verify_bare(bytes(data), trust=nitro_trust)
    assert verdict.reason == "nitro.signature"
    assert isinstance(verdict.error, NitroSignatureError)


#: The evervault test specs (SOURCES.md lists them).
SPECS = [
    "valid_attestation_doc_check_pcr8_only_time_sensitive.json",
    "valid_attestation_doc_in_cert_der_encoding_time_sensitive.json",
    "valid_attestation_doc_in_cert_incorrect_pcrs_time_sensitive.json",
    "valid_attestation_doc_in_cert_time_sensitive.json",
    "valid_attestation_doc_in_non_debug_mode_with_correct_pcrs_time_sensitive.json",
]


@pytest.mark.parametrize("spec_name", SPECS)
def test_evervault_spec_holds(vectors: Path, nitro_trust: TrustStore, spec_name: str) -> None:
    spec = json.loads((vectors / "nitro/evervault/test-specs" / spec_name).read_text())
    data = (vectors / "nitro/evervault" / Path(spec["file"]).name).read_bytes()
    lines, malformed = [], []
    for key, value in spec["pcrs"].items():
        line = f'{key} = ["{value}"]'
        try:
            Policy.from_toml(f"[nitro]\n{line}\n", source="spec", base_dir=Path("."))
        except PolicyError:
            malformed.append(key)  # not a 48-byte hex digest: it cannot match anything
            continue
        lines.append(line)
    zeros = all(v.strip("0") == "" for v in spec["pcrs"].values())
    pol = policy("\n".join(lines) + ("\nallow_debug = true" if zeros else ""))
    verdict = verify_bare(data, trust=nitro_trust, pol=pol, form_name=CERT_FORM)
    checks = passed(verdict)
    # isAttestationDocValid: the chain, the signature, the time and the RA-TLS binding hold.
    assert spec["isAttestationDocValid"] is True
    assert {"nitro.chain", "nitro.signature", "nitro.timestamp", "binding.ratls"} <= set(checks)
    if spec["shouldPcrsMatch"]:
        assert verdict.accepted, verdict.error
        assert not malformed
    else:
        assert not verdict.accepted
        assert verdict.reason is not None and verdict.reason.startswith("policy.pcr")
        assert isinstance(verdict.error, PolicyViolationError)


def test_ratls_binding_refuses_another_key(vectors: Path, nitro_trust: TrustStore) -> None:
    genuine = x509.load_pem_x509_certificate(
        (
            vectors / "nitro/evervault/non-debug-cert-containing-attestation-document-18-1-23.pem"
        ).read_bytes()
    )
    san = genuine.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impostor")])
    forged = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(genuine.not_valid_before_utc)
        .not_valid_after(genuine.not_valid_after_utc)
        .add_extension(san.value, critical=False)
        .sign(key, hashes.SHA384())
    )
    verdict = verify_bare(forged.public_bytes(Encoding.PEM), trust=nitro_trust, form_name=CERT_FORM)
    assert verdict.reason == "binding.ratls"
    assert isinstance(verdict.error, ReportDataMismatchError)


# --- the document's structure ----------------------------------------------------------------


NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def fake() -> Any:
    return make_nitro(NOW)


@pytest.mark.parametrize(
    ("fields", "error", "fragment"),
    [
        ({"colour": "blue"}, MalformedEvidenceError, "unknown field"),
        ({"digest": "SHA256"}, UnsupportedVersionError, "digest"),
        ({"pcrs": {0: b"\x00" * 32}}, MalformedEvidenceError, "PCR0"),
        ({"pcrs": {32: b"\x00" * 48}}, MalformedEvidenceError, "PCR index"),
        ({"cabundle": []}, MalformedEvidenceError, "cabundle"),
        ({"user_data": b"x" * 513}, MalformedEvidenceError, "user_data"),
        ({"module_id": ""}, MalformedEvidenceError, "module_id"),
        ({"timestamp": -1}, MalformedEvidenceError, "timestamp"),
        ({"certificate": ...}, MalformedEvidenceError, "certificate"),
    ],
)
def test_malformed_documents(fake: Any, fields: dict[str, Any], error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        parse_document(fake.document(**fields))


def test_other_signature_algorithm_is_refused(fake: Any) -> None:
    import cbor2

    doc = cbor2.loads(fake.document())
    doc[0] = cbor2.dumps({1: -7})
    with pytest.raises(Exception, match="ES256 signature is 64 bytes"):
        parse_document(cbor2.dumps(doc))


def chain_of(fake: Any) -> list[x509.Certificate]:
    return [fake.root, fake.intermediate, fake.leaf]


def pin(fake: Any) -> str:
    return str(fake.root.fingerprint(hashes.SHA256()).hex())


def test_fake_chain_verifies(fake: Any) -> None:
    chain = verify_nitro_chain(chain_of(fake), pinned_sha256=pin(fake), trusted_root=None, now=NOW)
    assert chain.describe() == ["fake.nitro-enclaves", "fake-zonal", "fake-enclave"]


def test_unpinned_root_is_refused(fake: Any) -> None:
    with pytest.raises(FingerprintMismatchError):
        verify_nitro_chain(
            chain_of(fake), pinned_sha256=AWS_ROOT_SHA256, trusted_root=None, now=NOW
        )


def test_chain_rules(fake: Any) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    root_key = ec.generate_private_key(ec.SECP384R1())
    start = NOW - timedelta(minutes=5)
    # The leaf is a CA.
    ca_leaf = cert(
        "fake-enclave", key, "fake-zonal", key, start=start, life=timedelta(hours=3), ca=True
    )
    with pytest.raises(ChainError):
        verify_nitro_chain([fake.root, fake.intermediate, ca_leaf], pinned_sha256=pin(fake),
                           trusted_root=None, now=NOW)  # fmt: skip
    # Out of order: the leaf before its issuer.
    with pytest.raises(ChainError, match="issuer"):
        verify_nitro_chain([fake.root, fake.leaf, fake.intermediate], pinned_sha256=pin(fake),
                           trusted_root=None, now=NOW)  # fmt: skip
    # Path length: a CA under the path_length=0 intermediate.
    extra = cert(
        "fake-extra", root_key, "fake-zonal", key, start=start, life=timedelta(days=1), ca=True
    )
    with pytest.raises(ChainError):
        verify_nitro_chain([fake.root, fake.intermediate, extra, fake.leaf],
                           pinned_sha256=pin(fake), trusted_root=None, now=NOW)  # fmt: skip
    # Expired at the evaluation time.
    with pytest.raises(CertificateExpiredError):
        verify_nitro_chain(chain_of(fake), pinned_sha256=pin(fake), trusted_root=None,
                           now=NOW + timedelta(hours=4))  # fmt: skip


# --- CSRs: user_data binds the key and the workload ------------------------------------------


def nitro_csr(fake: Any, user_data: Any) -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    claims = WorkloadClaims(hashlib.sha256(b"wasm").digest(), b"", "demo", nonce=b"\x42" * 32)
    binding = hashlib.sha512(spki(key) + claims.to_der()).digest()
    data = binding if user_data == "binding" else user_data
    doc = fake.document(user_data=data)
    csr, _ = make_csr(
        [(oids.EVIDENCE_NITRO, encode_nitro_evidence(doc), False),
         (oids.WORKLOAD_CLAIMS, claims.to_der(), False)],
        key,
    )  # fmt: skip
    return csr


def test_csr_binding_in_user_data(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("donjon.attestation.nitro.verify.AWS_NITRO_ROOT_SHA256", pin(fake))
    pol = policy(f'pcr0 = ["{"01" * 48}"]')
    good = verify_csr(nitro_csr(fake, "binding"), policy=pol, trust=TrustStore(), now=NOW)
    assert good.accepted, good.error
    assert good.result is not None
    assert good.result.platform == "nitro"
    assert "hypervisor-trusted" in good.result.advisories
    for user_data in (b"\x00" * 64, None):
        bad = verify_csr(nitro_csr(fake, user_data), policy=pol, trust=TrustStore(), now=NOW)
        assert bad.reason == "binding.report_data"
        assert isinstance(bad.error, ReportDataMismatchError)


def test_csr_pcr_pin_and_section(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("donjon.attestation.nitro.verify.AWS_NITRO_ROOT_SHA256", pin(fake))
    csr = nitro_csr(fake, "binding")
    wrong = verify_csr(csr, policy=policy(f'pcr2 = ["{"09" * 48}"]'), trust=TrustStore(), now=NOW)
    assert wrong.reason == "policy.pcr2"
    none = Policy.from_toml("[snp]\naccept_any_workload = true\n", source="t", base_dir=Path("."))
    refused = verify_csr(csr, policy=none, trust=TrustStore(), now=NOW)
    assert isinstance(refused.error, PlatformNotAllowedError)


def test_document_made_outside_its_leaf(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("donjon.attestation.nitro.verify.AWS_NITRO_ROOT_SHA256", pin(fake))
    late = int((NOW + timedelta(hours=5)).timestamp() * 1000)
    doc = fake.document(timestamp=late)
    verdict = verify_bare(doc, at=NOW)
    assert verdict.reason == "nitro.timestamp"
    # Signed by a key that is not the leaf's.
    other = sign_document(
        __import__("cbor2").loads(fake.document())[2], ec.generate_private_key(ec.SECP384R1())
    )
    assert verify_bare(other, at=NOW).reason == "nitro.signature"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('pcr5 = ["00"]', "unknown key"),
        ('pcr0 = ["0011"]', "expected 48"),
        ("allow_debug = 1", "true or false"),
    ],
)
def test_policy_section_is_strict(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        Policy.from_toml(f"[nitro]\n{text}\n", source="t.toml", base_dir=Path("."))


def test_every_spec_is_covered(vectors: Path) -> None:
    found = sorted(p.name for p in (vectors / "nitro/evervault/test-specs").glob("*.json"))
    assert found == sorted(SPECS)
