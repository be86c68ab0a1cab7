"""The Keep's identity: the CSR's extensions and binding, and the UNATTESTED self-signed cert."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.attestation.oids import ATTESTATION_RESULT
from donjon.keep import identity
from donjon.keep.identity import Identity, IdentityError
from donjon.keep.platforms import nil

CLAIMS_OID = "2.25.181619702866105806351283801535139069181.1"
NIL_OID = "2.25.181619702866105806351283801535139069181.3.4"
SIM_OID = "2.25.181619702866105806351283801535139069181.3.1"


class RecordingPlatform:
    """A P-384 platform (like snp and sim) that records the report_data it was asked to sign."""

    name = "sim"

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def available(self) -> bool:
        return True

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        self.seen.append(report_data)
        return x509.UnrecognizedExtension(x509.ObjectIdentifier(SIM_OID), b"\x04\x02hi")


def hand_claims_der(claims: WorkloadClaims) -> bytes:
    """WorkloadClaims DER assembled byte by byte from the ASN.1 in docs/extensions.md."""
    name = claims.package_name.encode()
    body = (
        b"\x02\x01\x01"
        + b"\x04\x20" + claims.wasm_sha256
        + b"\x04\x20" + claims.config_sha256
        + b"\x0c" + bytes([len(name)]) + name
    )  # fmt: skip
    return b"\x30" + bytes([len(body)]) + body


def spki(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_csr_carries_claims_and_evidence_bound_to_key_and_claims(claims: WorkloadClaims) -> None:
    platform = RecordingPlatform()
    key = identity.generate_key(platform)
    csr = identity.build_csr(key, claims, platform)
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA384)
    assert csr.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    exts = {e.oid.dotted_string: e for e in csr.extensions}
    assert set(exts) == {CLAIMS_OID, SIM_OID}
    assert not exts[CLAIMS_OID].critical and not exts[SIM_OID].critical
    assert exts[CLAIMS_OID].value.value == hand_claims_der(claims)  # type: ignore[attr-defined]
    # report_data = SHA-512(SPKI DER || claims DER), computed here independently.
    expected = hashlib.sha512(spki(csr.public_key()) + hand_claims_der(claims)).digest()  # type: ignore[arg-type]
    assert platform.seen == [expected]
    assert len(expected) == 64


def test_nil_csr_uses_p256_and_der_null_evidence(claims: WorkloadClaims) -> None:
    platform = nil.create(None)
    csr = identity.build_csr(identity.generate_key(platform), claims, platform)
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    nil_ext = csr.extensions.get_extension_for_oid(x509.ObjectIdentifier(NIL_OID))
    assert nil_ext.value.value == b"\x05\x00"  # type: ignore[attr-defined]


def test_csr_refuses_a_key_on_the_wrong_curve(claims: WorkloadClaims) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(IdentityError, match="does not match platform sim"):
        identity.build_csr(key, claims, RecordingPlatform())


def test_csr_refuses_an_unknown_evidence_oid(claims: WorkloadClaims) -> None:
    platform = RecordingPlatform()
    platform.evidence_extension = lambda rd: x509.UnrecognizedExtension(  # type: ignore[method-assign]
        x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"
    )
    with pytest.raises(IdentityError, match=r"unknown evidence OID 1\.2\.3\.4"):
        identity.build_csr(identity.generate_key(platform), claims, platform)


def test_self_signed_is_marked_unattested(self_signed: Identity, claims: WorkloadClaims) -> None:
    cert = self_signed.certificate
    assert not self_signed.attested
    assert self_signed.describe().startswith("UNATTESTED: self-signed certificate")
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "echo (UNATTESTED)"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    claims_ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(CLAIMS_OID))
    assert claims_ext.value.value == hand_claims_der(claims)  # type: ignore[attr-defined]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.public_key() == self_signed.key.public_key()


def test_each_run_gets_a_new_key(claims: WorkloadClaims) -> None:
    platform = nil.create(None)
    a = identity.unattested_identity(identity.generate_key(platform), claims, platform)
    b = identity.unattested_identity(identity.generate_key(platform), claims, platform)
    assert spki(a.key.public_key()) != spki(b.key.public_key())


def _with_result(ca, claims: WorkloadClaims, result: AttestationResult) -> Identity:  # type: ignore[no-untyped-def]
    issued = ca.issue(claims)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(issued.certificate.subject)
        .issuer_name(ca.cert.subject)
        .public_key(issued.key.public_key())
        .serial_number(1)
        .not_valid_before(issued.certificate.not_valid_before_utc)
        .not_valid_after(issued.certificate.not_valid_after_utc)
        .add_extension(x509.UnrecognizedExtension(ATTESTATION_RESULT, result.to_der()), False)
        .sign(ca.key, hashes.SHA256())
    )
    return Identity(issued.key, (leaf,), ca.cert, "snp", claims)


def _result(platform: str, development: bool) -> AttestationResult:
    return AttestationResult(
        platform=platform,
        product="Milan",
        measurement=bytes(48),
        tcb="bl=3 tee=0 snp=8 ucode=115",
        tcb_status="UpToDate",
        advisories=(),
        debug=False,
        development=development,
        policy_id="0" * 64,
        evaluated_at=dt.datetime(2026, 11, 26, tzinfo=dt.UTC),
    )


def test_describe_reads_the_stewards_attestation_result(steward_ca, claims: WorkloadClaims) -> None:  # type: ignore[no-untyped-def]
    snp = _with_result(steward_ca, claims, _result("snp", development=False))
    assert snp.describe().startswith(
        "attested certificate from CN=Test Steward CA, platform snp, TCB UpToDate, sha256 "
    )
    sim = _with_result(steward_ca, claims, _result("sim", development=True))
    assert sim.describe().startswith(
        "certificate from CN=Test Steward CA for platform sim: DEVELOPMENT only, no TEE attested"
    )
