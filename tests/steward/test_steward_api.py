"""The Steward's HTTP API against a real uvicorn server over TLS, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from steward_fakes import CLAIMS, FakePolicy, FakeVerifier, make_csr, make_key
from steward_harness import RunningSteward, StewardFactory

from donjon.attestation import oids
from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.steward import wire
from donjon.steward.app import AppSettings
from donjon.steward.ca import CertificateAuthority
from donjon.steward.clock import fixed_clock

PKCS10 = {"Content-Type": "application/pkcs10"}
ADMIN = {"Authorization": "Bearer s3cret-token"}  # the conftest Steward's admin token


@pytest.fixture
def steward(start_steward: StewardFactory, store_url: str) -> RunningSteward:
    return start_steward(store_url=store_url)


def _chain(body: bytes) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(d) for d in wire.split_sequence(body, "answer")]


def test_health(steward: RunningSteward) -> None:
    r = steward.client.get("/")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_enarx_pkcs10_issues_ca_and_leaf(steward: RunningSteward) -> None:
    key = make_key()
    r = steward.client.post("/", content=make_csr(key, claims=CLAIMS), headers=PKCS10)
    assert r.status_code == 200, r.text
    ca, leaf = _chain(r.content)
    assert ca == steward.ca.certificate
    leaf.verify_directly_issued_by(ca)
    assert leaf.public_key() == key.public_key()
    # The attestation result is in the certificate, and says "nil, development".
    ext = leaf.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    result = AttestationResult.from_der(ext.value)
    assert (result.platform, result.development) == ("nil", True)
    assert result.policy_id == "ab" * 32
    # The workload claims are copied byte for byte.
    claims = leaf.extensions.get_extension_for_oid(oids.WORKLOAD_CLAIMS).value
    assert isinstance(claims, x509.UnrecognizedExtension)
    assert WorkloadClaims.from_der(claims.value) == CLAIMS
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["keep.example.test"]
    assert "urn:donjon:wasm:sha256:" + "5f" * 32 in san.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not (usage.value.key_cert_sign or usage.value.key_agreement)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(days=28) <= lifetime <= timedelta(days=28, minutes=2)


def test_every_issued_certificate_has_an_audit_record(steward: RunningSteward) -> None:
    r = steward.client.post("/", content=make_csr(claims=CLAIMS), headers=PKCS10)
    leaf = _chain(r.content)[1]
    serial = format(leaf.serial_number, "x")
    record = steward.client.get(f"/v1/certificates/{serial}", headers=ADMIN)
    assert record.status_code == 200
    data = record.json()
    assert data["serial"] == serial
    assert data["platform"] == "nil"
    assert data["policy_digest"] == "ab" * 32
    assert data["workload_sha256"] == "5f" * 32
    assert data["verdict"]["accepted"] is True
    assert len(data["evidence_sha256"]) == 64
    assert data["revoked"] is False


def test_unknown_serial_is_404_and_bad_serial_400(steward: RunningSteward) -> None:
    r = steward.client.get("/v1/certificates/abcdef", headers=ADMIN)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert steward.client.get("/v1/certificates/not-hex", headers=ADMIN).status_code == 400


def test_tampered_csr_signature_is_401_naming_the_check(steward: RunningSteward) -> None:
    csr = bytearray(make_csr())
    csr[-3] ^= 0x01  # inside the ECDSA signature
    r = steward.client.post("/", content=bytes(csr), headers=PKCS10)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["check"] == "csr-signature"
    assert body["status"] == 401
    assert body["type"].endswith("evidence-not-authentic")


def test_garbage_is_400(steward: RunningSteward) -> None:
    r = steward.client.post("/", content=b"\x30\x03\x02\x01", headers=PKCS10)
    assert r.status_code == 400
    assert r.json()["check"] == "csr-parse"


def test_empty_body_is_400(steward: RunningSteward) -> None:
    r = steward.client.post("/", content=b"", headers=PKCS10)
    assert r.status_code == 400
    assert r.json()["check"] == "csr"


def test_policy_mismatch_is_403_and_counted(start_steward: StewardFactory, store_url: str) -> None:
    s = start_steward(store_url=store_url, policy=FakePolicy(allow_nil=False))
    r = s.client.post("/", content=make_csr(), headers=PKCS10)
    assert r.status_code == 403
    assert r.json()["check"] == "platform-allowed"
    rejected = s.steward.store.rejections()
    assert [x.reason for x in rejected] == ["platform-allowed"]
    assert rejected[0].evidence_sha256 == r.json()["evidence_sha256"]
    metrics = s.client.get("/metrics").text
    assert 'reason="platform-allowed"' in metrics
    assert s.steward.store.counts()["issued"] == 0


def test_wrong_workload_is_403(start_steward: StewardFactory) -> None:
    s = start_steward(policy=FakePolicy(workloads=("00" * 32,)))
    r = s.client.post("/", content=make_csr(claims=CLAIMS), headers=PKCS10)
    assert r.status_code == 403
    assert r.json()["check"] == "policy-workload"


def test_wrong_content_type_is_415(steward: RunningSteward) -> None:
    r = steward.client.post("/", content=make_csr(), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["check"] == "content-type"


def test_body_over_the_limit_is_413_before_verification(start_steward: StewardFactory) -> None:
    verifier = FakeVerifier()
    s = start_steward(verifier=verifier)
    r = s.client.post("/", content=b"\x30" * (256 * 1024 + 1), headers=PKCS10)
    assert r.status_code == 413
    assert r.json()["check"] == "body-size"
    assert verifier.calls == 0


def test_bundle_answers_chain_and_issued(steward: RunningSteward) -> None:
    keys = [make_key(), make_key()]
    body = wire.encode_certificates([make_csr(k) for k in keys])  # SEQUENCE OF CSR
    r = steward.client.post("/", content=body, headers={"Content-Type": wire.BUNDLE})
    assert r.status_code == 200, r.text
    chain, issued = wire.decode_bundle_output(r.content)
    assert [x509.load_der_x509_certificate(c) for c in chain] == [steward.ca.certificate]
    leaves = [x509.load_der_x509_certificate(c) for c in issued]
    assert [leaf.public_key() for leaf in leaves] == [k.public_key() for k in keys]


def test_bundle_with_one_bad_request_issues_nothing(steward: RunningSteward) -> None:
    bad = bytearray(make_csr())
    bad[-3] ^= 1
    body = wire.encode_certificates([make_csr(), bytes(bad)])
    r = steward.client.post("/", content=body, headers={"Content-Type": wire.BUNDLE})
    assert r.status_code == 401
    assert steward.steward.store.counts()["issued"] == 0


def test_v1_attest_explains_in_json(steward: RunningSteward) -> None:
    r = steward.client.post(
        "/v1/attest",
        content=make_csr(claims=CLAIMS),
        headers={**PKCS10, "Accept": "application/json"},
    )
    assert r.status_code == 200
    data = r.json()
    assert len(data["certificates"]) == 2
    assert data["certificates"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert data["verdict"]["accepted"] is True
    assert {c["id"] for c in data["checks"]} >= {"csr-signature", "platform-allowed"}
    assert data["issued"][0]["claims"]["workload"]["package_name"] == "hello"


def test_revocation_needs_the_token_and_shows_in_the_crl(steward: RunningSteward) -> None:
    leaf = _chain(steward.client.post("/", content=make_csr(), headers=PKCS10).content)[1]
    serial = format(leaf.serial_number, "x")
    body = {"serial": serial, "reason": "key-compromise"}
    assert steward.client.post("/v1/revoke", json=body).status_code == 401
    wrong = steward.client.post("/v1/revoke", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = steward.client.post(
        "/v1/revoke", json=body, headers={"Authorization": "Bearer s3cret-token"}
    )
    assert ok.status_code == 200, ok.text
    r = steward.client.get("/v1/crl")
    assert r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.content)
    assert crl.is_signature_valid(steward.ca.certificate.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    record = steward.client.get(f"/v1/certificates/{serial}", headers=ADMIN)
    assert record.json()["revoked"] is True


def test_revocation_rejects_unknown_fields(steward: RunningSteward) -> None:
    r = steward.client.post(
        "/v1/revoke",
        json={"serial": "ab", "extra": 1},
        headers={"Authorization": "Bearer s3cret-token"},
    )
    assert r.status_code == 400
    assert "extra" in r.json()["detail"]


def test_ca_and_openapi(steward: RunningSteward) -> None:
    pem = steward.client.get("/v1/ca").content
    assert x509.load_pem_x509_certificate(pem) == steward.ca.certificate
    der = steward.client.get("/v1/ca", headers={"Accept": "application/pkix-cert"}).content
    assert x509.load_der_x509_certificate(der) == steward.ca.certificate
    doc = steward.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/", "/v1/attest", "/v1/ca", "/v1/crl", "/v1/revoke", "/metrics"} <= set(doc["paths"])


def test_unknown_route_and_method_are_problems(steward: RunningSteward) -> None:
    r = steward.client.get("/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert steward.client.delete("/").status_code == 405


def test_lifetime_never_exceeds_the_collateral(start_steward: StewardFactory) -> None:
    limit = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    s = start_steward(verifier=FakeVerifier(not_after_limit=limit))
    leaf = _chain(s.client.post("/", content=make_csr(), headers=PKCS10).content)[1]
    assert leaf.not_valid_after_utc == limit


def test_csr_may_narrow_but_not_add_dns_names(start_steward: StewardFactory) -> None:
    s = start_steward(policy=FakePolicy(san_dns=("a.test", "b.test")))
    leaf = _chain(s.client.post("/", content=make_csr(dns=("b.test",)), headers=PKCS10).content)[1]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["b.test"]
    r = s.client.post("/", content=make_csr(dns=("evil.test",)), headers=PKCS10)
    assert r.status_code == 403
    assert r.json()["check"] == "san-dns"


def test_a_verifier_that_raises_refuses_the_request(start_steward: StewardFactory) -> None:
    def broken(csr_der: bytes, **_: object) -> object:
        raise RuntimeError("boom")

    s = start_steward(verifier=broken)
    r = s.client.post("/", content=make_csr(), headers=PKCS10)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["check"] == "verifier"
    assert "boom" not in r.text  # no internals leak to the client
    assert s.steward.store.counts() == {"issued": 0, "revoked": 0, "rejected": 1}


class _BrokenPolicy:
    """A policy object with a bug: reading its lifetime fails."""

    digest = "ab" * 32
    san_dns = ("keep.example.test",)
    allow_nil = True
    workloads = ()

    @property
    def cert_lifetime(self) -> timedelta:
        raise RuntimeError("bug")


def test_an_internal_failure_is_still_a_problem(start_steward: StewardFactory) -> None:
    s = start_steward(policy=_BrokenPolicy())
    r = s.client.post("/", content=make_csr(), headers=PKCS10)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("internal-error")
    assert "bug" not in r.text
    assert s.steward.store.counts()["issued"] == 0


def test_a_ca_not_valid_at_the_evaluation_time_is_refused_cleanly(
    start_steward: StewardFactory,
) -> None:
    ca = CertificateAuthority.create(now=datetime.now(UTC))
    s = start_steward(ca=ca, clock=fixed_clock(datetime(2023, 2, 1, tzinfo=UTC)))
    r = s.client.post("/", content=make_csr(), headers=PKCS10)
    assert r.status_code == 503
    assert r.json()["check"] == "ca-validity"


def test_slow_attestation_times_out_as_503(start_steward: StewardFactory) -> None:
    inner = FakeVerifier()

    def slow(csr_der: bytes, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return inner(csr_der, **kwargs)

    s = start_steward(verifier=slow, settings=AppSettings(attest_timeout=0.2, max_concurrent=1))
    r = s.client.post("/", content=make_csr(), headers=PKCS10)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["type"].endswith("overloaded")


def test_metrics_expose_latency_histograms(steward: RunningSteward) -> None:
    steward.client.post("/", content=make_csr(), headers=PKCS10)
    text = steward.client.get("/metrics").text
    assert 'donjon_steward_request_seconds_bucket{le="0.005",route="/"}' in text
    assert 'donjon_steward_requests_total{method="POST",route="/",status="200"} 1.0' in text
    assert "donjon_steward_certificates_issued_total 1.0" in text
    assert "donjon_steward_audit_commit_seconds_count 1.0" in text


def test_the_csr_subject_is_not_copied(steward: RunningSteward) -> None:
    key = make_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.example")]))
        .add_extension(x509.UnrecognizedExtension(oids.EVIDENCE_NIL, b"\x05\x00"), critical=False)
        .sign(key, hashes.SHA384())
        .public_bytes(serialization.Encoding.DER)
    )
    leaf = _chain(steward.client.post("/", content=csr, headers=PKCS10).content)[1]
    assert leaf.subject.rfc4514_string() == "CN=keep.example.test"


def test_the_crl_is_reused_until_a_revocation_or_half_its_validity(
    start_steward: StewardFactory,
) -> None:
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    s = start_steward(clock=lambda: now[0])
    first = s.client.get("/v1/crl").content
    now[0] += timedelta(hours=1)
    assert s.client.get("/v1/crl").content == first  # nothing changed: the same signed CRL
    leaf = _chain(s.client.post("/", content=make_csr(), headers=PKCS10).content)[1]
    revoke = {"serial": format(leaf.serial_number, "x"), "reason": "superseded"}
    assert s.client.post("/v1/revoke", json=revoke, headers=ADMIN).status_code == 200
    after = x509.load_der_x509_crl(s.client.get("/v1/crl").content)
    assert after.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    # A revocation made by another Steward on the same store is seen too.
    other = s.steward.store
    second = _chain(s.client.post("/", content=make_csr(), headers=PKCS10).content)[1]
    other.revoke(format(second.serial_number, "x"), reason="superseded", at=now[0])
    listed = x509.load_der_x509_crl(s.client.get("/v1/crl").content)
    assert listed.get_revoked_certificate_by_serial_number(second.serial_number) is not None
    # Past half its validity (12 h) a new one is signed, dated now.
    cached = s.client.get("/v1/crl").content
    now[0] += timedelta(hours=12, minutes=1)
    fresh = x509.load_der_x509_crl(s.client.get("/v1/crl").content)
    assert fresh.public_bytes(serialization.Encoding.DER) != cached
    assert fresh.last_update_utc == now[0]
