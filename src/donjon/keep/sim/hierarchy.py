"""A simulated AMD key hierarchy: ARK -> ASK -> VCEK, in AMD's certificate format.

Real SEV-SNP reports are signed by a chip's VCEK, whose certificate is signed by
the product line's ASK, itself signed by the self-signed ARK. The simulator mints
the same three certificates (RSA-4096 with RSA-PSS/SHA-384 for ARK and ASK, an
EC P-384 VCEK carrying AMD's TCB, hwID and product extensions), so the verifier
walks exactly the code path it walks for real evidence. Only the organisation
name differs: it says plainly that this is not AMD.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import encoder
from pyasn1.type import char, univ

from donjon.attestation.certprofile import key_usage
from donjon.attestation.snp.vcek import (
    OID_BL_SPL,
    OID_FMC_SPL,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_SNP_SPL,
    OID_STRUCT_VERSION,
    OID_TEE_SPL,
    OID_UCODE_SPL,
)
from donjon.keep.sim.products import VCEK_PRODUCT_NAMES, Product, TcbVersion

#: AMD's arc for VCEK/VLEK extensions (AMD KDS interface spec, "VCEK certificate"); the
#: named ones are the verifier's (:mod:`donjon.attestation.snp.vcek`).
AMD_ARC = "1.3.6.1.4.1.3704.1"
#: SPL slots that AMD fills with zero: 4..7 on Milan/Genoa, 5..7 on Turin (as in real VCEKs).
OID_RESERVED_SPLS = tuple(x509.ObjectIdentifier(f"{AMD_ARC}.3.{i}") for i in (4, 5, 6, 7))

#: Says in every certificate that this hierarchy is a simulation.
SIM_ORGANIZATION = "Donjon simulated TEE (not AMD)"
RSA_BITS = 4096
ARK_LIFETIME = timedelta(days=25 * 365)
VCEK_LIFETIME = timedelta(days=7 * 365)

#: The exact RSA-PSS parameters of AMD's ARK/ASK signatures: SHA-384, MGF1-SHA-384, salt 48.
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


@dataclass(frozen=True)
class Hierarchy:
    """The three certificates and their private keys."""

    ark_key: rsa.RSAPrivateKey
    ark: x509.Certificate
    ask_key: rsa.RSAPrivateKey
    ask: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey
    vcek: x509.Certificate


def amd_name(common_name: str) -> x509.Name:
    """A subject laid out in AMD's attribute order (OU, C, L, ST, O, CN)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIM_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _der_integer(value: int) -> bytes:
    return bytes(encoder.encode(univ.Integer(value)))


def _der_ia5(text: str) -> bytes:
    return bytes(encoder.encode(char.IA5String(text)))


def vcek_extensions(
    product: Product, tcb: TcbVersion, hwid: bytes
) -> list[x509.UnrecognizedExtension]:
    """AMD's VCEK extensions: DER INTEGER SPLs, IA5String product, raw hwID bytes."""
    if len(hwid) != product.hwid_size:
        raise ValueError(f"{product.value} hwID must be {product.hwid_size} bytes")
    exts = [
        x509.UnrecognizedExtension(
            OID_STRUCT_VERSION, _der_integer(1 if product.turin_layout else 0)
        ),
        x509.UnrecognizedExtension(OID_PRODUCT_NAME, _der_ia5(VCEK_PRODUCT_NAMES[product])),
        x509.UnrecognizedExtension(OID_BL_SPL, _der_integer(tcb.bl)),
        x509.UnrecognizedExtension(OID_TEE_SPL, _der_integer(tcb.tee)),
        x509.UnrecognizedExtension(OID_SNP_SPL, _der_integer(tcb.snp)),
        *(
            x509.UnrecognizedExtension(oid, _der_integer(0))
            for oid in OID_RESERVED_SPLS[1 if product.turin_layout else 0 :]
        ),
        x509.UnrecognizedExtension(OID_UCODE_SPL, _der_integer(tcb.ucode)),
    ]
    if product.turin_layout:
        exts.append(x509.UnrecognizedExtension(OID_FMC_SPL, _der_integer(tcb.fmc or 0)))
    exts.append(x509.UnrecognizedExtension(OID_HWID, hwid))
    return exts


def _serial() -> int:
    return secrets.randbits(63) | 1


def make_ark(product: Product, now: datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = amd_name(f"ARK-{product.value}")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + ARK_LIFETIME)
        .add_extension(_ca_key_usage(crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384(), rsa_padding=AMD_PSS)
    )
    return key, cert


def make_ask(
    product: Product, ark_key: rsa.RSAPrivateKey, ark: x509.Certificate, now: datetime
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    cert = (
        x509.CertificateBuilder()
        .subject_name(amd_name(f"SEV-{product.value}"))
        .issuer_name(ark.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + ARK_LIFETIME)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ark_key.public_key()),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(crl_sign=False), critical=True)
        .sign(ark_key, hashes.SHA384(), rsa_padding=AMD_PSS)
    )
    return key, cert


def make_vcek(
    product: Product,
    tcb: TcbVersion,
    hwid: bytes,
    ask_key: rsa.RSAPrivateKey,
    ask: x509.Certificate,
    now: datetime,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A VCEK for one chip at one TCB; a TCB change means a new certificate, as at AMD."""
    key = key or ec.generate_private_key(ec.SECP384R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(amd_name("SEV-VCEK"))
        .issuer_name(ask.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VCEK_LIFETIME)
    )
    for ext in vcek_extensions(product, tcb, hwid):
        builder = builder.add_extension(ext, critical=False)
    return key, builder.sign(ask_key, hashes.SHA384(), rsa_padding=AMD_PSS)


def generate(
    product: Product, tcb: TcbVersion, hwid: bytes, now: datetime | None = None
) -> Hierarchy:
    """A fresh ARK, ASK and VCEK (two RSA-4096 key generations: about a second)."""
    now = now or datetime.now(UTC)
    ark_key, ark = make_ark(product, now)
    ask_key, ask = make_ask(product, ark_key, ark, now)
    vcek_key, vcek = make_vcek(product, tcb, hwid, ask_key, ask, now)
    return Hierarchy(ark_key, ark, ask_key, ask, vcek_key, vcek)


def _ca_key_usage(*, crl_sign: bool) -> x509.KeyUsage:
    return key_usage(key_cert_sign=True, crl_sign=crl_sign)
