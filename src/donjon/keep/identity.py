"""The Keep's identity: a fresh key, the CSR that carries evidence, and the certificate.

The key pair is generated per run and never written to disk. Its public key and
the workload claims are bound into the TEE's ``report_data``
(``SHA-512(SPKI DER || claims DER)``), so the evidence proves that this key
belongs to this workload in this TEE. Without a Steward nobody can check that,
so the Keep signs its own certificate and marks it UNATTESTED everywhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from donjon.attestation import binding, oids
from donjon.attestation.certprofile import signature_hash, with_keep_leaf_profile
from donjon.attestation.claims import AttestationResult, ClaimsError, WorkloadClaims
from donjon.errors import DonjonError
from donjon.keep.platforms.base import HARDWARE_PLATFORMS, Platform

#: What a self-signed Keep certificate says about itself, in its subject.
UNATTESTED = "UNATTESTED"
SELF_SIGNED_DAYS = 1


class IdentityError(DonjonError):
    """The Keep could not build its key, CSR or certificate."""


@dataclass(frozen=True)
class Identity:
    """What the TLS layer needs: the key, the chain to present and what to trust."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    #: Leaf first, then intermediates up to (not including) the trust anchor.
    chain: tuple[x509.Certificate, ...]
    #: The Steward's CA certificate; ``None`` for a self-signed identity.
    ca: x509.Certificate | None
    platform: str
    claims: WorkloadClaims

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def attested(self) -> bool:
        """Issued by a Steward after it judged the evidence; self-signed proves nothing.

        On ``nil`` and ``sim`` the Steward's judgement is a development allowance, which
        :meth:`describe` and the certificate's AttestationResult both state.
        """
        return self.ca is not None

    def attestation_result(self) -> AttestationResult | None:
        """What the Steward wrote about this Keep in its certificate, if it wrote it."""
        try:
            ext = self.certificate.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT)
        except x509.ExtensionNotFound:
            return None
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):
            return None
        try:
            return AttestationResult.from_der(value.value)
        except ClaimsError:
            return None

    def describe(self) -> str:
        """One line for logs and ``donjon run`` output."""
        fp = self.certificate.fingerprint(hashes.SHA256()).hex()
        if self.ca is None:
            return f"{UNATTESTED}: self-signed certificate (no steward), sha256 {fp}"
        issuer = self.ca.subject.rfc4514_string()
        result = self.attestation_result()
        platform = result.platform if result else self.platform
        if platform not in HARDWARE_PLATFORMS or (result is not None and result.development):
            return (
                f"certificate from {issuer} for platform {platform}: DEVELOPMENT only, "
                f"no TEE attested this Keep, sha256 {fp}"
            )
        status = f", TCB {result.tcb_status}" if result and result.tcb_status else ""
        return f"attested certificate from {issuer}, platform {platform}{status}, sha256 {fp}"

    def certificate_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


def generate_key(platform: Platform) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(platform.key_curve())


def spki_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def report_data(key: ec.EllipticCurvePrivateKey, claims: WorkloadClaims) -> bytes:
    return binding.donjon_report_data(spki_der(key), claims.to_der())


def _subject(claims: WorkloadClaims, attested: bool) -> x509.Name:
    name = claims.package_name or "workload"
    if not attested:
        name = f"{name} ({UNATTESTED})"
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Donjon Keep"),
            x509.NameAttribute(NameOID.COMMON_NAME, name[:64]),
        ]
    )


def build_csr(
    key: ec.EllipticCurvePrivateKey, claims: WorkloadClaims, platform: Platform
) -> x509.CertificateSigningRequest:
    """The PKCS#10 request a Steward turns into a certificate (Enarx's protocol)."""
    if key.curve.name != platform.key_curve().name:
        raise IdentityError(
            f"key curve {key.curve.name} does not match platform {platform.name} "
            f"({platform.key_curve().name})"
        )
    evidence = platform.evidence_extension(report_data(key, claims))
    if evidence.oid not in oids.EVIDENCE_OIDS:
        raise IdentityError(
            f"platform {platform.name} produced an unknown evidence OID "
            f"{evidence.oid.dotted_string}"
        )
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(claims, attested=True))
        .add_extension(x509.UnrecognizedExtension(oids.WORKLOAD_CLAIMS, claims.to_der()), False)
        .add_extension(evidence, critical=False)
    )
    return builder.sign(key, signature_hash(key))


def self_signed(
    key: ec.EllipticCurvePrivateKey,
    claims: WorkloadClaims,
    platform: Platform,
    *,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate for a Keep without a Steward, marked UNATTESTED in its subject.

    It still carries the workload claims, so a peer that pins it can see what it
    claims to run; but nothing vouches for that claim.
    """
    now = now or dt.datetime.now(dt.UTC)
    subject = _subject(claims, attested=False)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.IPAddress(ipaddress.IPv6Address("::1")),
        ]
    )
    builder = with_keep_leaf_profile(
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
    )
    builder = builder.add_extension(san, critical=False).add_extension(
        x509.UnrecognizedExtension(oids.WORKLOAD_CLAIMS, claims.to_der()), False
    )
    return builder.sign(key, signature_hash(key))


def unattested_identity(
    key: ec.EllipticCurvePrivateKey, claims: WorkloadClaims, platform: Platform
) -> Identity:
    cert = self_signed(key, claims, platform)
    return Identity(key=key, chain=(cert,), ca=None, platform=platform.name, claims=claims)
