"""Pieces of the Steward without HTTP: CA files, store, wire formats, verdict mapping."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from steward_fakes import FakeCheck, FakeError, FakeVerdict, make_csr, make_key

from donjon.steward import wire
from donjon.steward.ca import CertificateAuthority
from donjon.steward.errors import (
    AttestationRefused,
    CAError,
    EvidenceNotAuthentic,
    KeyAlgorithmMismatch,
    MalformedRequest,
    NotFound,
)
from donjon.steward.issue import check_key_algorithm
from donjon.steward.service import classify
from donjon.steward.store import AuditStore, normalize_serial

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def test_ca_roundtrip_and_key_permissions(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(curve="p384", now=NOW)
    cert_path, key_path = ca.save(tmp_path)
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    loaded = CertificateAuthority.load(cert_path, key_path)
    assert loaded.certificate == ca.certificate
    bc = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    os.chmod(key_path, 0o644)
    with pytest.raises(CAError, match="readable by other users"):
        CertificateAuthority.load(cert_path, key_path)


def test_ca_refuses_a_foreign_key(tmp_path: Path) -> None:
    a = CertificateAuthority.create(now=NOW)
    b = CertificateAuthority.create(now=NOW)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    with pytest.raises(CAError, match="does not match"):
        CertificateAuthority.load(tmp_path / "a" / "ca.pem", tmp_path / "b" / "ca.key")


def test_ca_refuses_garbage(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a cert")
    key = tmp_path / "ca.key"
    key.write_text("x")
    key.chmod(0o600)
    with pytest.raises(CAError, match="not a valid certificate"):
        CertificateAuthority.load(tmp_path / "ca.pem", key)


def test_store_revoke_is_idempotent_and_keeps_the_first_reason(tmp_path: Path) -> None:
    from donjon.steward.store import CertificateRecord

    store = AuditStore.open(f"sqlite:///{tmp_path / 'a.db'}")
    record = CertificateRecord(
        serial="abc", issued_at=NOW, not_before=NOW, not_after=NOW + timedelta(days=1),
        subject_key_sha256="00" * 32, platform="nil", development=True, workload_sha256=None,
        claims={}, verdict={}, evidence_sha256="11" * 32, policy_digest="22" * 32,
        certificate_der=b"\x30\x00",
    )  # fmt: skip
    store.record_issued([record])
    first = store.revoke("0xABC", reason="key-compromise", at=NOW)
    again = store.revoke("ab:c", reason="superseded", at=NOW + timedelta(hours=1))
    assert (again.revoked_at, again.revocation_reason) == (first.revoked_at, "key-compromise")
    assert store.revoked() == [("abc", NOW, "key-compromise")]
    with pytest.raises(NotFound):
        store.revoke("def", reason="unspecified", at=NOW)
    store.close()


def test_serial_normalization() -> None:
    assert normalize_serial("0x0A:BC") == "abc"
    with pytest.raises(MalformedRequest):
        normalize_serial("xyz")


def test_bundle_limits() -> None:
    with pytest.raises(MalformedRequest, match="empty"):
        wire.decode_bundle(bytes.fromhex("3000"))
    with pytest.raises(MalformedRequest, match="at most"):
        wire.decode_bundle(wire.encode_certificates([bytes.fromhex("3000")] * 17))
    with pytest.raises(MalformedRequest, match="trailing"):
        wire.decode_bundle(bytes.fromhex("3000") + b"\x00")


def _verdict(reason: str, code: str, csr: bool = True) -> FakeVerdict:
    parsed = x509.load_der_x509_csr(make_csr()) if csr else None
    return FakeVerdict(
        False,
        (FakeCheck(reason, False, "x"),),
        reason,
        FakeError(code),
        "snp",
        None,
        "",
        None,
        parsed,
    )


@pytest.mark.parametrize(
    ("reason", "code", "expected"),
    [
        ("csr.parse", "csr.malformed", MalformedRequest),
        ("csr.signature", "csr.signature", EvidenceNotAuthentic),
        ("evidence.format", "evidence.malformed", MalformedRequest),
        ("snp.signature", "snp.signature", EvidenceNotAuthentic),
        ("snp.chain", "chain.untrusted", EvidenceNotAuthentic),
        ("snp.validity", "cert.expired", EvidenceNotAuthentic),
        ("snp.revocation", "cert.revoked", EvidenceNotAuthentic),
        ("binding.report_data", "binding.report_data", EvidenceNotAuthentic),
        ("snp.debug", "snp.debug", AttestationRefused),
        ("policy.measurement", "policy.violation", AttestationRefused),
        ("tcb.minimum", "tcb.below_minimum", AttestationRefused),
        ("platform.supported", "platform.unsupported", AttestationRefused),
    ],
)
def test_refusals_map_to_distinct_statuses(reason: str, code: str, expected: type) -> None:
    assert classify(_verdict(reason, code)) is expected


def test_unparsable_csr_is_malformed() -> None:
    assert classify(_verdict("whatever", "x", csr=False)) is MalformedRequest


def test_key_algorithm_anti_downgrade() -> None:
    p256 = x509.load_der_x509_csr(make_csr(make_key(ec.SECP256R1())))
    p384 = x509.load_der_x509_csr(make_csr(make_key(ec.SECP384R1())))
    check_key_algorithm("snp", p384)
    check_key_algorithm("sgx", p256)
    check_key_algorithm("nil", p256)
    for platform in ("snp", "sim", "tdx", "cca"):
        with pytest.raises(KeyAlgorithmMismatch):
            check_key_algorithm(platform, p256)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(rsa_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(KeyAlgorithmMismatch, match="ECDSA"):
        check_key_algorithm("nil", x509.load_der_x509_csr(rsa_csr))
    with pytest.raises(KeyAlgorithmMismatch):
        check_key_algorithm("martian", p384)
