"""Test doubles for the Steward: a verifier with the engine's contract, a policy, CSR makers.

The fake verifier trusts nothing it cannot check without hardware: it checks
the CSR self-signature and accepts only the explicit ``nil`` evidence, and
only when the fake policy allows it, as the real engine does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.claims import AttestationResult, ClaimsError, WorkloadClaims
from donjon.steward.ca import CertificateAuthority
from donjon.steward.issue import issue_certificate

NIL_EVIDENCE = b"\x05\x00"  # DER NULL: "no TEE", said explicitly


@dataclass(frozen=True)
class FakePolicy:
    digest: str = "ab" * 32
    text_digest: str = "ab" * 32
    cert_lifetime: timedelta = timedelta(days=28)
    san_dns: tuple[str, ...] = ("keep.example.test",)
    allow_nil: bool = True
    workloads: tuple[str, ...] = ()  # allowed wasm sha256 hex; empty = any


@dataclass(frozen=True)
class FakeCheck:
    id: str
    passed: bool
    reason: str

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"


@dataclass(frozen=True)
class FakeError:
    code: str


@dataclass(frozen=True)
class FakeVerdict:
    accepted: bool
    checks: tuple[FakeCheck, ...]
    reason: str | None
    error: FakeError | None
    platform: str
    result: AttestationResult | None
    evidence_sha256: str
    not_after_limit: datetime | None
    csr: x509.CertificateSigningRequest | None


@dataclass
class FakeVerifier:
    """Callable like ``verify_csr``; counts calls so tests can see it was (not) consulted."""

    calls: int = 0
    not_after_limit: datetime | None = None
    seen: list[str] = field(default_factory=list)

    def __call__(self, csr_der: bytes, *, policy: Any, trust: Any, now: datetime) -> FakeVerdict:
        self.calls += 1
        checks: list[FakeCheck] = []
        digest = hashlib.sha256(csr_der).hexdigest()

        def refuse(
            check: str,
            why: str,
            csr: x509.CertificateSigningRequest | None,
            platform: str = "nil",
        ) -> FakeVerdict:
            checks.append(FakeCheck(check, False, why))
            return FakeVerdict(
                False, tuple(checks), check, FakeError(check), platform, None, digest, None, csr
            )

        try:
            csr = x509.load_der_x509_csr(csr_der)
        except (ValueError, x509.InvalidVersion) as exc:
            return refuse("csr-parse", f"not a DER CSR: {exc}", None, "unknown")
        if not csr.is_signature_valid:
            return refuse("csr-signature", "the CSR self-signature does not verify", csr, "unknown")
        checks.append(FakeCheck("csr-signature", True, "valid"))
        try:
            ext = csr.extensions.get_extension_for_oid(oids.EVIDENCE_NIL)
        except x509.ExtensionNotFound:
            return refuse("evidence-missing", "no evidence extension", csr, "unknown")
        value = ext.value
        assert isinstance(value, x509.UnrecognizedExtension)
        digest = hashlib.sha256(value.value).hexdigest()
        self.seen.append(digest)
        if not policy.allow_nil:
            return refuse("platform-allowed", "policy does not allow nil (no TEE)", csr)
        checks.append(FakeCheck("platform-allowed", True, "nil allowed by policy"))
        workload = None
        try:
            claims_ext = csr.extensions.get_extension_for_oid(oids.WORKLOAD_CLAIMS).value
            assert isinstance(claims_ext, x509.UnrecognizedExtension)
            workload = WorkloadClaims.from_der(claims_ext.value)
        except x509.ExtensionNotFound:
            pass
        except ClaimsError as exc:
            return refuse("workload-claims-format", str(exc), csr)
        if policy.workloads and (
            workload is None or workload.wasm_sha256.hex() not in policy.workloads
        ):
            return refuse("policy-workload", "workload digest not allowed by policy", csr)
        result = AttestationResult(
            platform="nil",
            product="",
            measurement=b"",
            tcb="",
            tcb_status="None",
            advisories=(),
            debug=False,
            development=True,
            policy_id=policy.digest,
            evaluated_at=now,
            workload=workload,
        )
        return FakeVerdict(
            True, tuple(checks), None, None, "nil", result, digest, self.not_after_limit, csr
        )


def make_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP384R1())


def make_csr(
    key: ec.EllipticCurvePrivateKey | None = None,
    *,
    evidence: tuple[x509.ObjectIdentifier, bytes] | None = (oids.EVIDENCE_NIL, NIL_EVIDENCE),
    claims: WorkloadClaims | None = None,
    dns: tuple[str, ...] = (),
) -> bytes:
    """A DER CSR as a Keep sends it: empty subject, evidence (and claims) extensions."""
    key = key or make_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if evidence is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(*evidence), critical=False)
    if claims is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(oids.WORKLOAD_CLAIMS, claims.to_der()), critical=False
        )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    algorithm = hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


WASM_DIGEST = bytes.fromhex("5f" * 32)
CLAIMS = WorkloadClaims(wasm_sha256=WASM_DIGEST, config_sha256=b"", package_name="hello")


def issue_snp_leaf(
    ca: CertificateAuthority,
    *,
    now: datetime,
    key: ec.EllipticCurvePrivateKey | None = None,
    **changes: object,
) -> x509.Certificate:
    """A leaf as the Steward issues it for an accepted SNP verdict; ``changes`` edit the claims."""
    fields: dict[str, object] = {
        "platform": "snp",
        "product": "Milan",
        "measurement": b"\x11" * 48,
        "tcb": "bl=3 tee=0 snp=8 ucode=115",
        "tcb_status": "UpToDate",
        "advisories": (),
        "debug": False,
        "development": False,
        "policy_id": "cd" * 32,
        "evaluated_at": now,
        "workload": CLAIMS,
    }
    fields.update(changes)
    result = AttestationResult(**fields)  # type: ignore[arg-type]
    claims = result.workload if result.workload is not None else CLAIMS  # the CSR's, copied
    csr = x509.load_der_x509_csr(make_csr(key or make_key(ec.SECP384R1()), claims=claims))
    verdict = FakeVerdict(True, (), None, None, result.platform, result, "ee" * 32, None, csr)
    return issue_certificate(ca, verdict, FakePolicy(), now=now).certificate
