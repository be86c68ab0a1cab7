"""Fixtures for the Keep's tests: workload claims, identities, and a stand-in Steward CA."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from donjon.attestation.claims import WorkloadClaims
from donjon.keep import identity
from donjon.keep.identity import Identity
from donjon.keep.platforms import nil


@dataclass
class StandInCA:
    """Plays the Steward's issuing CA: signs leaf certificates for Keep keys."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(self, claims: WorkloadClaims, *, days: int = 1) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = self.sign(key.public_key(), days=days)
        return Identity(key=key, chain=(leaf,), ca=self.cert, platform="nil", claims=claims)

    def sign(self, public: ec.EllipticCurvePublicKey, *, days: int = 1) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keep")]))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(self.key, hashes.SHA256())
        )


def make_ca(name: str = "Test Steward CA") -> StandInCA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return StandInCA(key, cert)


@pytest.fixture
def claims() -> WorkloadClaims:
    return WorkloadClaims(
        wasm_sha256=hashlib.sha256(b"main.wasm bytes").digest(),
        config_sha256=hashlib.sha256(b"config bytes").digest(),
        package_name="echo",
    )


@pytest.fixture
def self_signed(claims: WorkloadClaims) -> Identity:
    platform = nil.create(None)
    return identity.unattested_identity(identity.generate_key(platform), claims, platform)


@pytest.fixture(scope="session")
def steward_ca() -> StandInCA:
    return make_ca()


@pytest.fixture(scope="session")
def other_ca() -> StandInCA:
    return make_ca("Some Other CA")
