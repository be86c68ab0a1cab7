"""Turn an accepted verdict into a leaf certificate.

Everything in the certificate comes from the verified evidence, the policy or
the CA; the client chooses only its key (proved by the CSR signature and bound
by the evidence) and, at most, DNS names that the policy already allows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from donjon.attestation import oids
from donjon.attestation.certprofile import with_keep_leaf_profile
from donjon.attestation.claims import AttestationResult, ClaimsError, WorkloadClaims
from donjon.steward.ca import CertificateAuthority
from donjon.steward.contract import PolicyLike, VerdictLike
from donjon.steward.errors import (
    AttestationRefused,
    CANotValid,
    KeyAlgorithmMismatch,
    MalformedRequest,
)

DEFAULT_LIFETIME = timedelta(days=28)
BACKDATE = timedelta(minutes=1)  # tolerate relying parties whose clocks run a little behind
DEVELOPMENT_PLATFORMS = frozenset({"nil", "sim", "kvm"})

#: Curves a CSR key may use, per platform. The evidence binds a hash of the key; a
#: weaker key than the binding's hash would let an attacker downgrade the identity.
ALLOWED_CURVES: dict[str, frozenset[str]] = {
    "snp": frozenset({"secp384r1"}),
    "sim": frozenset({"secp384r1"}),
    "tdx": frozenset({"secp384r1"}),
    "cca": frozenset({"secp384r1"}),
    "nitro": frozenset({"secp384r1"}),
    "azure-snp": frozenset({"secp384r1"}),
    "azure-tdx": frozenset({"secp384r1"}),
    "sgx": frozenset({"secp256r1", "secp384r1"}),
    "kvm": frozenset({"secp256r1", "secp384r1"}),
    "nil": frozenset({"secp256r1", "secp384r1"}),
}


def workload_uri(wasm_sha256: bytes) -> str:
    return f"urn:donjon:wasm:sha256:{wasm_sha256.hex()}"


def spki_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def check_key_algorithm(
    platform: str, csr: x509.CertificateSigningRequest
) -> ec.EllipticCurvePublicKey:
    """Refuse a key weaker than (or foreign to) what the platform's binding demands."""
    key = csr.public_key()
    allowed = ALLOWED_CURVES.get(platform)
    if allowed is None:
        raise KeyAlgorithmMismatch(
            f"no key policy for platform {platform!r}", check="key-algorithm"
        )
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyAlgorithmMismatch(
            f"CSR key is {type(key).__name__}, {platform} keys must be ECDSA "
            f"({', '.join(sorted(allowed))})",
            check="key-algorithm",
        )
    if key.curve.name not in allowed:
        raise KeyAlgorithmMismatch(
            f"CSR key curve {key.curve.name} is not allowed for {platform} "
            f"(allowed: {', '.join(sorted(allowed))})",
            check="key-algorithm",
        )
    return key


def csr_workload_claims(
    csr: x509.CertificateSigningRequest,
) -> tuple[WorkloadClaims | None, bytes | None]:
    """The WorkloadClaims extension of a CSR, decoded and as DER (to copy verbatim)."""
    try:
        ext = csr.extensions.get_extension_for_oid(oids.WORKLOAD_CLAIMS)
    except x509.ExtensionNotFound:
        return None, None
    except ValueError as exc:
        raise MalformedRequest(f"CSR extensions are malformed: {exc}", check="csr") from None
    value = ext.value
    der = value.value if isinstance(value, x509.UnrecognizedExtension) else None
    if der is None:
        raise MalformedRequest(
            "CSR workload claims extension is unreadable", check="workload-claims"
        )
    try:
        return WorkloadClaims.from_der(der), der
    except ClaimsError as exc:
        raise MalformedRequest(f"CSR workload claims: {exc}", check="workload-claims") from None


def requested_dns(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        raise MalformedRequest(f"CSR subjectAltName is malformed: {exc}", check="csr") from None
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def choose_dns_names(policy: PolicyLike, csr: x509.CertificateSigningRequest) -> list[str]:
    """The policy's names; a CSR may narrow them but never add one."""
    allowed = [str(n) for n in policy.san_dns]
    asked = requested_dns(csr)
    if not asked:
        return allowed
    refused = [n for n in asked if n not in allowed]
    if refused:
        raise AttestationRefused(
            f"CSR asks for DNS names the policy does not allow: {', '.join(refused)}",
            check="san-dns",
        )
    return asked


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    result: AttestationResult
    workload: WorkloadClaims | None
    subject_key_sha256: str

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def _result_for(verdict: VerdictLike, policy: PolicyLike, now: datetime) -> AttestationResult:
    if verdict.result is not None:
        return verdict.result
    # The engine always fills it for accepted verdicts; stay explicit if one does not.
    return AttestationResult(
        platform=verdict.platform,
        product="",
        measurement=b"",
        tcb="",
        tcb_status="Unknown",
        advisories=(),
        debug=False,
        development=verdict.platform in DEVELOPMENT_PLATFORMS,
        policy_id=policy.digest,
        evaluated_at=now,
    )


def issue_certificate(
    ca: CertificateAuthority,
    verdict: VerdictLike,
    policy: PolicyLike,
    *,
    now: datetime,
) -> Issued:
    """Sign the leaf for an accepted verdict (the caller has checked ``verdict.accepted``)."""
    csr = verdict.csr
    if csr is None:
        raise MalformedRequest("the verifier accepted a request without a CSR", check="csr")
    ca_cert = ca.certificate
    if not ca_cert.not_valid_before_utc <= now < ca_cert.not_valid_after_utc:
        raise CANotValid(
            f"the Steward CA is valid {ca_cert.not_valid_before_utc.isoformat()} .. "
            f"{ca_cert.not_valid_after_utc.isoformat()}, not at {now.isoformat()}",
            check="ca-validity",
        )
    key = check_key_algorithm(verdict.platform, csr)
    workload, workload_der = csr_workload_claims(csr)
    result = _result_for(verdict, policy, now)

    lifetime = policy.cert_lifetime or DEFAULT_LIFETIME
    not_after = now + lifetime
    if verdict.not_after_limit is not None:
        not_after = min(not_after, verdict.not_after_limit)
    not_after = min(not_after, ca.certificate.not_valid_after_utc)
    if not_after <= now:
        raise AttestationRefused(
            f"the evidence's collateral expired at {not_after.isoformat()}",
            check="collateral-expired",
        )

    dns = choose_dns_names(policy, csr)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    claims = workload or result.workload
    if claims is not None:
        names.append(x509.UniformResourceIdentifier(workload_uri(claims.wasm_sha256)))
    names.append(x509.UniformResourceIdentifier(f"urn:donjon:platform:{result.platform}"))

    # The subject is never the client's choice: a CN is what legacy clients match host
    # names against when a certificate has no DNS name.
    label = dns[0] if dns else f"Donjon Keep ({result.platform})"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label[:64])])

    builder = with_keep_leaf_profile(
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - BACKDATE, ca.certificate.not_valid_before_utc))
        .not_valid_after(not_after)
    )
    builder = (
        builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(oids.ATTESTATION_RESULT, result.to_der()), critical=False
        )
    )
    if workload_der is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(oids.WORKLOAD_CLAIMS, workload_der), critical=False
        )
    certificate = builder.sign(ca.key, ca.hash_algorithm)
    return Issued(
        certificate=certificate,
        result=result,
        workload=claims,
        subject_key_sha256=spki_sha256(key),
    )
