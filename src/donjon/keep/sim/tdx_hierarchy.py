"""A simulated Intel hierarchy for the TDX product: Root CA, PCK Platform CA, PCK, TCB Signing.

The certificates follow Intel's profile (ECDSA P-256 with SHA-256, the same
common names, critical basicConstraints and keyUsage, the PCK's SGX extension
with FMSPC, PCE-ID and the platform's TCB), so the verifier walks exactly the
path it walks for real quotes. Only the organisation says plainly that this is
not Intel, and the root is trusted only by the fingerprint a policy names.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from donjon.attestation.certprofile import key_usage
from donjon.attestation.dcap.chain import ROOT_CN, TCB_SIGNING_CN
from donjon.attestation.dcap.pck import SGX_EXTENSION_OID, PckExtensions, encode_sgx_extension

SIM_ORGANIZATION = "Donjon simulated TEE (not Intel)"
PCK_CA_CN = "Intel SGX PCK Platform CA"
PCK_CN = "Intel SGX PCK Certificate"
ROOT_LIFETIME = timedelta(days=25 * 365)
LEAF_LIFETIME = timedelta(days=7 * 365)


def intel_name(common_name: str) -> x509.Name:
    """A subject in Intel's attribute order (CN, O, L, ST, C)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIM_ORGANIZATION),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _serial() -> int:
    return secrets.randbits(127) | 1


def _builder(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: Issued | None,
    now: datetime,
    lifetime: timedelta,
) -> x509.CertificateBuilder:
    issuer_name = issuer.cert.subject if issuer else intel_name(subject)
    issuer_key = issuer.key.public_key() if issuer else key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(intel_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
    )


def make_ca(subject: str, issuer: Issued | None, now: datetime, *, path_length: int) -> Issued:
    """The root (``issuer`` None: self-signed) or an intermediate CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(subject, key, issuer, now, ROOT_LIFETIME)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return Issued(key, cert)


def make_leaf(
    subject: str,
    issuer: Issued,
    now: datetime,
    *,
    sgx: PckExtensions | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """A PCK (with its SGX extension) or the TCB Signing certificate."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(subject, key, issuer, now, LEAF_LIFETIME)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if sgx is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(SGX_EXTENSION_OID), encode_sgx_extension(sgx)
            ),
            critical=False,
        )
    return Issued(key, builder.sign(issuer.key, hashes.SHA256()))


@dataclass(frozen=True)
class IntelHierarchy:
    root: Issued
    pck_ca: Issued
    pck: Issued
    tcb_signing: Issued


def generate(sgx: PckExtensions, now: datetime) -> IntelHierarchy:
    """Root, PCK Platform CA, PCK and TCB Signing: four P-256 keys, milliseconds."""
    root = make_ca(ROOT_CN, None, now, path_length=1)
    pck_ca = make_ca(PCK_CA_CN, root, now, path_length=0)
    pck = make_leaf(PCK_CN, pck_ca, now, sgx=sgx)
    tcb_signing = make_leaf(TCB_SIGNING_CN, root, now)
    return IntelHierarchy(root, pck_ca, pck, tcb_signing)


def make_crl(issuer: Issued, now: datetime, lifetime: timedelta) -> x509.CertificateRevocationList:
    """An empty CRL of ``issuer``, current from a minute ago for ``lifetime``."""
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(now - timedelta(minutes=1))
        .next_update(now + lifetime)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
