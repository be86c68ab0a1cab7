"""A throw-away AMD-like PKI for negative tests: ARK -> ASK -> VCEK with RSA-PSS and the
AMD extensions, SNP reports signed with the VCEK, CRLs, CSRs.

Only inputs are built here; every expected outcome in the tests is a vendor fact or
a constant written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import encoder
from pyasn1.type import char, univ

from donjon.attestation.certprofile import key_usage
from donjon.attestation.snp.report import SnpReport, TcbVersion

#: Instants inside every vector's validity window (expected.json "verify_at").
VERIFY_AT = {
    "snp-milan-v2-go-sev-guest": "2025-01-01T00:00:00Z",
    "snp-milan-v2-virtee": "2025-01-01T00:00:00Z",
    "snp-milan-v2-trustee": "2025-01-01T00:00:00Z",
    "snp-milan-v3-vlek-trustee": "2025-06-01T00:00:00Z",
    "snp-milan-v5-gcp-zero-reportdata": "2026-01-01T00:00:00Z",
    "snp-milan-v2-steward-csr": "2023-02-01T00:00:00Z",
    "snp-milan-v2-azure-hcl": "2025-01-01T00:00:00Z",
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


SNP_IDS = list(VERIFY_AT)


@dataclass(frozen=True)
class SnpVector:
    """One SEV-SNP vector of expected.json, loaded: its entry, report and endorsement key."""

    data: dict[str, Any]
    report: bytes
    vcek: x509.Certificate


PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
AMD_ARC = "1.3.6.1.4.1.3704.1"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ext(oid: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)


def _int(n: int) -> bytes:
    return bytes(encoder.encode(univ.Integer(n)))


@dataclass
class FakeAmd:
    product: str
    ark_key: rsa.RSAPrivateKey
    ark: x509.Certificate
    ask_key: rsa.RSAPrivateKey
    ask: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey
    vcek: x509.Certificate
    hwid: bytes
    tcb: TcbVersion

    def crl(
        self,
        revoked: tuple[int, ...] = (),
        *,
        this_update: datetime = T0,
        next_update: datetime | None = None,
        key: rsa.RSAPrivateKey | None = None,
        extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    ) -> x509.CertificateRevocationList:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ark.subject)
            .last_update(this_update)
            .next_update(next_update or this_update + timedelta(days=365))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(this_update)
                .build()
            )
        return builder.sign(key or self.ark_key, hashes.SHA384(), rsa_padding=PSS)

    def crl_without_next_update(self, this_update: datetime = T0) -> x509.CertificateRevocationList:
        """A genuine ARK-signed CRL with no nextUpdate (RFC 5280 requires one; builders
        refuse to omit it, so the TBSCertList is re-encoded and signed here)."""
        from pyasn1.codec.der import decoder
        from pyasn1_modules import rfc5280

        signed = self.crl(this_update=this_update)
        tbs, _ = decoder.decode(signed.tbs_certlist_bytes, asn1Spec=rfc5280.TBSCertList())
        bare = rfc5280.TBSCertList()
        for name in ("version", "signature", "issuer", "thisUpdate"):
            bare[name] = tbs[name]
        tbs_der = bytes(encoder.encode(bare))
        signature = self.ark_key.sign(tbs_der, PSS, hashes.SHA384())
        outer = rfc5280.CertificateList()
        outer["tbsCertList"] = bare
        outer["signatureAlgorithm"] = tbs["signature"]
        outer["signature"] = univ.BitString.fromOctetString(signature)
        return x509.load_der_x509_crl(bytes(encoder.encode(outer)))

    def report(self, **fields: object) -> SnpReport:
        """A report for this chip and TCB; override any field."""
        base = SnpReport(
            version=3,
            cpuid={"Milan": (0x19, 0x01, 0x01), "Genoa": (0x19, 0x11, 0x01)}.get(
                self.product, (0x1A, 0x02, 0x01)
            ),
            chip_id=self.hwid.ljust(64, b"\0"),
            reported_tcb=self.tcb,
            current_tcb=self.tcb,
            committed_tcb=self.tcb,
            launch_tcb=self.tcb,
        )
        return replace(base, **fields)  # type: ignore[arg-type]

    def sign(self, report: SnpReport, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        signed = report.to_bytes()[:0x2A0]
        der = (key or self.vcek_key).sign(signed, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return report.with_signature(r, s).to_bytes()


def _ca_usage(*, crl_sign: bool) -> x509.KeyUsage:
    """AMD's ARK and ASK key usages (keyCertSign; the ARK also cRLSign)."""
    return key_usage(key_cert_sign=True, crl_sign=crl_sign)


def make_amd(
    product: str = "Milan",
    *,
    hwid: bytes = bytes(range(64)),
    tcb: TcbVersion | None = None,
    not_before: datetime = T0,
    vcek_days: int = 365 * 7,
    ark_key: rsa.RSAPrivateKey | None = None,
) -> FakeAmd:
    tcb = tcb or TcbVersion(bl=3, tee=0, snp=8, ucode=115)
    ark_key = ark_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    later = not_before + timedelta(days=365 * 25)
    ark = (
        x509.CertificateBuilder()
        .subject_name(_name(f"ARK-{product}"))
        .issuer_name(_name(f"ARK-{product}"))
        .public_key(ark_key.public_key())
        .serial_number(0x10000)
        .not_valid_before(not_before)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(crl_sign=True), critical=True)
        .sign(ark_key, hashes.SHA384(), rsa_padding=PSS)
    )
    ask = (
        x509.CertificateBuilder()
        .subject_name(_name(f"SEV-{product}"))
        .issuer_name(ark.subject)
        .public_key(ask_key.public_key())
        .serial_number(0x10001)
        .not_valid_before(not_before)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(crl_sign=False), critical=True)
        .sign(ark_key, hashes.SHA384(), rsa_padding=PSS)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("SEV-VCEK"))
        .issuer_name(ask.subject)
        .public_key(vcek_key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=vcek_days))
    )
    components = {"bl": tcb.bl, "tee": tcb.tee, "snp": tcb.snp, "ucode": tcb.ucode}
    oids = {"bl": "3.1", "tee": "3.2", "snp": "3.3", "ucode": "3.8", "fmc": "3.9"}
    if tcb.fmc is not None:
        components["fmc"] = tcb.fmc
    builder = builder.add_extension(_ext(f"{AMD_ARC}.1", _int(1)), critical=False)
    builder = builder.add_extension(
        _ext(f"{AMD_ARC}.2", bytes(encoder.encode(char.IA5String(product)))), critical=False
    )
    for name, level in components.items():
        builder = builder.add_extension(
            _ext(f"{AMD_ARC}.{oids[name]}", _int(level)), critical=False
        )
    builder = builder.add_extension(_ext(f"{AMD_ARC}.4", hwid), critical=False)
    vcek = builder.sign(ask_key, hashes.SHA384(), rsa_padding=PSS)
    return FakeAmd(product, ark_key, ark, ask_key, ask, vcek_key, vcek, hwid, tcb)


def make_csr(
    extensions: list[tuple[x509.ObjectIdentifier, bytes, bool]],
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    from cryptography.hazmat.primitives.serialization import Encoding

    key = key or ec.generate_private_key(ec.SECP384R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    for oid, value, critical in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=critical)
    csr = builder.sign(key, hashes.SHA384())
    return csr.public_bytes(Encoding.DER), key


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
