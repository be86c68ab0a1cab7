"""Verify a Keep's CSR: its self-signature, its one evidence extension, the key binding,
and the policy. This is what a Steward calls before it issues a certificate.

``verify_csr`` and ``verify_report`` never raise for bad input: every failure
becomes a :class:`~donjon.attestation.verdict.Verdict` with ``accepted=False``,
the id of the failed check and a typed error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID

from donjon.attestation import binding, oids
from donjon.attestation.appraise import appraise_snp, tcb_status
from donjon.attestation.claims import (
    REVOCATION_NOT_CHECKED,
    AttestationResult,
    ClaimsError,
    WorkloadClaims,
)
from donjon.attestation.errors import (
    AttestationError,
    CsrError,
    FingerprintMismatchError,
    MalformedEvidenceError,
    PlatformNotAllowedError,
    ReportDataMismatchError,
    UnsupportedPlatformError,
)
from donjon.attestation.evidence import (
    check_kvm,
    check_nil,
    decode_enarx_snp,
    decode_sim,
)
from donjon.attestation.policy import Policy, SnpPolicy
from donjon.attestation.snp.chain import CrlMode, fingerprint
from donjon.attestation.snp.product import Product
from donjon.attestation.snp.verify import SimRoot, SnpEvidence, SnpVerified, verify_snp
from donjon.attestation.trust import TrustStore, parse_cert_bundle
from donjon.attestation.verdict import UNKNOWN_PLATFORM, Checklist, Stop, Verdict

#: Standard extensions a CSR may carry; the Steward ignores them (it decides SANs and usage).
_STANDARD = frozenset(
    {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
    }
)
_PLATFORM = {
    oids.ENARX_SNP: "snp",
    oids.EVIDENCE_SIM: "sim",
    oids.EVIDENCE_NIL: "nil",
    oids.ENARX_KVM: "kvm",
    oids.ENARX_SGX: "sgx",
    oids.EVIDENCE_TDX: "tdx",
    oids.EVIDENCE_CCA: "cca",
}


@dataclass
class _Context:
    checks: Checklist
    policy: Policy
    trust: TrustStore
    now: datetime
    product: Product | None
    crl_mode: CrlMode | None  # None: the policy's [snp] crl (sim: always if-available)
    used_crl_mode: CrlMode | None = None  # what the chain check ran with, for the verdict


def verify_csr(
    csr_der: bytes,
    *,
    policy: Policy,
    trust: TrustStore,
    now: datetime,
    product: Product | None = None,
    crl_mode: CrlMode | None = None,
) -> Verdict:
    """Judge one CSR at time ``now`` (timezone-aware).

    ``crl_mode`` overrides the policy's ``[snp] crl`` (for ``donjon attest verify``);
    the Steward leaves it to the policy.
    """
    checks = Checklist()
    ctx = _Context(checks, policy, trust, now, product, crl_mode)
    platform = UNKNOWN_PLATFORM  # until the evidence extension is read: never "nil"
    evidence_sha256 = ""
    csr: x509.CertificateSigningRequest | None = None
    try:
        _require_aware(now)
        csr = checks.step("csr.parse", lambda: _parse_csr(csr_der))
        checks.step("csr.signature", lambda: _csr_signature(csr))
        evidence_ext, claims_ext = checks.step("csr.extensions", lambda: _extensions(csr))
        platform = _PLATFORM[evidence_ext.oid]
        evidence_value = _ext_bytes(evidence_ext)
        evidence_sha256 = hashlib.sha256(evidence_value).hexdigest()
        claims_der = _ext_bytes(claims_ext) if claims_ext is not None else None
        workload = checks.step("csr.workload_claims", lambda: _claims(claims_der))
        spki = checks.step("csr.public_key", lambda: _spki(csr))
        return _dispatch(ctx, platform, evidence_value, spki, claims_der, workload, csr)
    except Stop:
        pass
    return _rejected(checks, platform, evidence_sha256, csr, now, crl_mode=ctx.used_crl_mode)


def verify_report(
    report: bytes,
    *,
    policy: Policy,
    trust: TrustStore,
    now: datetime,
    vcek: x509.Certificate | None = None,
    chain: tuple[x509.Certificate, ...] = (),
    crls: tuple[x509.CertificateRevocationList, ...] = (),
    product: Product | None = None,
    crl_mode: CrlMode | None = None,
) -> Verdict:
    """Judge a bare SNP report (no CSR, so no key binding) against the ``[snp]`` policy."""
    checks = Checklist()
    ctx = _Context(checks, policy, trust, now, product, crl_mode)
    evidence = SnpEvidence(report=report, endorsement=vcek, intermediates=chain, crls=crls)
    sha = hashlib.sha256(report).hexdigest()
    mode = ctx.used_crl_mode = crl_mode or policy.snp.crl
    try:
        _require_aware(now)
        verified = verify_snp(
            evidence, trust=trust, now=now, checks=checks, product_hint=product, crl_mode=mode
        )
        checks.not_checked("binding.report_data", "not checked: a bare report binds no key")
        return _appraised(ctx, "snp", verified, policy.snp, None, sha, None, development=False)
    except Stop:
        pass
    return _rejected(checks, "snp", sha, None, now, crl_mode=mode)


# --- steps ---------------------------------------------------------------------------------


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("verification time must be timezone-aware")


def _parse_csr(data: bytes) -> tuple[x509.CertificateSigningRequest, str]:
    try:
        csr = x509.load_der_x509_csr(data)
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise CsrError(f"not a DER PKCS#10 CSR ({str(exc)[:80]})") from exc
    return csr, f"PKCS#10, {len(data)} bytes"


def _csr_signature(csr: x509.CertificateSigningRequest) -> tuple[None, str]:
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported key or algorithm: a refusal, not a crash
        raise CsrError(f"CSR signature cannot be checked ({exc})", code="csr.signature") from exc
    if not valid:
        raise CsrError("the CSR's self-signature does not verify", code="csr.signature")
    return None, "self-signature verifies (the requester holds the key)"


def _extensions(
    csr: x509.CertificateSigningRequest,
) -> tuple[
    tuple[x509.Extension[x509.ExtensionType], x509.Extension[x509.ExtensionType] | None], str
]:
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CsrError(f"CSR extensions are malformed ({exc})") from exc
    evidence = [e for e in extensions if e.oid in oids.EVIDENCE_OIDS]
    claims = [e for e in extensions if e.oid == oids.WORKLOAD_CLAIMS]
    unknown = [
        e
        for e in extensions
        if e.oid not in oids.EVIDENCE_OIDS
        and e.oid != oids.WORKLOAD_CLAIMS
        and e.oid not in _STANDARD
    ]
    if unknown:
        names = ", ".join(e.oid.dotted_string for e in unknown)
        raise CsrError(f"CSR carries unknown extension(s) {names}", code="csr.unknown_extension")
    if len(evidence) != 1:
        raise CsrError(
            f"CSR must carry exactly one evidence extension, found {len(evidence)}",
            code="csr.evidence_count",
        )
    if evidence[0].critical:
        raise CsrError("the evidence extension must not be critical", code="csr.critical")
    names = f"evidence {evidence[0].oid.dotted_string}" + (", workload claims" if claims else "")
    return (evidence[0], claims[0] if claims else None), names


def _spki(csr: x509.CertificateSigningRequest) -> tuple[bytes, str]:
    key = csr.public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return spki, f"{type(key).__name__.removeprefix('_')}, {len(spki)}-byte SPKI"


def _ext_bytes(ext: x509.Extension[x509.ExtensionType]) -> bytes:
    value = ext.value
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    raise CsrError(f"extension {ext.oid.dotted_string} has an unexpected form")


def _claims(claims_der: bytes | None) -> tuple[WorkloadClaims | None, str]:
    if claims_der is None:
        return None, "none: the Enarx binding SHA-384(SPKI) applies"
    try:
        claims = WorkloadClaims.from_der(claims_der)
    except ClaimsError as exc:
        raise CsrError(f"workload claims: {exc}", code="csr.workload_claims") from exc
    return claims, (
        f"package {claims.package_name!r}, wasm {claims.wasm_sha256.hex()[:16]}...: "
        "binding SHA-512(SPKI || claims) applies"
    )


def _dispatch(
    ctx: _Context,
    platform: str,
    value: bytes,
    spki: bytes,
    claims_der: bytes | None,
    workload: WorkloadClaims | None,
    csr: x509.CertificateSigningRequest,
) -> Verdict:
    checks = ctx.checks
    sha = hashlib.sha256(value).hexdigest()
    if platform in ("sgx", "tdx", "cca"):
        checks.step("platform.supported", lambda: _unsupported(platform))
    if platform in ("nil", "kvm"):
        allowed = ctx.policy.nil_allow if platform == "nil" else ctx.policy.kvm_allow
        checks.step("evidence.format", lambda: _dev_format(platform, value))
        checks.step("platform.allowed", lambda: _dev_allowed(platform, allowed))
        result = AttestationResult(
            platform=platform,
            product="",
            measurement=b"",
            tcb="",
            tcb_status="NoTEE",
            advisories=(),
            debug=True,
            development=True,
            policy_id=ctx.policy.digest,
            evaluated_at=ctx.now,
            workload=workload,
        )
        return _accepted(checks, platform, result, sha, None, csr, ctx.now, None)
    if platform == "sim":
        sim = ctx.policy.sim
        root = checks.step("platform.allowed", lambda: _sim_root(ctx.policy))
        evidence = checks.step("evidence.format", lambda: (decode_sim(value), "sim evidence"))
        checks.step("sim.root", lambda: _sim_ark_matches(evidence, root))
        snp_policy = sim.snp if sim is not None else SnpPolicy()
    else:
        evidence = checks.step(
            "evidence.format", lambda: (decode_enarx_snp(value), "Enarx SNP evidence")
        )
        root = None
        snp_policy = ctx.policy.snp
    ctx.used_crl_mode = ctx.crl_mode or snp_policy.crl
    verified = verify_snp(
        evidence,
        trust=ctx.trust,
        now=ctx.now,
        checks=checks,
        product_hint=ctx.product,
        crl_mode=ctx.used_crl_mode,
        sim_root=root,
    )
    checks.step(
        "binding.report_data", lambda: _binding(verified.report.report_data, spki, claims_der)
    )
    return _appraised(
        ctx, platform, verified, snp_policy, workload, sha, csr, development=platform == "sim"
    )


def _unsupported(platform: str) -> tuple[None, str]:
    raise UnsupportedPlatformError(
        f"{platform.upper()} evidence is recognised, but its verification is not supported yet"
    )


def _dev_format(platform: str, value: bytes) -> tuple[None, str]:
    (check_nil if platform == "nil" else check_kvm)(value)
    return None, f"{platform} evidence (no TEE)"


def _dev_allowed(platform: str, allowed: bool) -> tuple[None, str]:
    if not allowed:
        raise PlatformNotAllowedError(
            f"{platform} evidence proves no TEE; the policy needs [{platform}] allow = true"
        )
    return None, f"[{platform}] allow = true: development certificate"


def _sim_root(policy: Policy) -> tuple[SimRoot, str]:
    sim = policy.sim
    if sim is None or sim.trust is None:
        raise PlatformNotAllowedError(
            'sim evidence needs an explicit [sim] trust = "path/to/ark.pem" entry in the policy'
        )
    try:
        certs = parse_cert_bundle(sim.trust.read_bytes(), str(sim.trust))
    except OSError as exc:
        raise PlatformNotAllowedError(
            f"[sim] trust: cannot read {sim.trust}: {exc.strerror or exc}"
        ) from exc
    except MalformedEvidenceError as exc:
        raise PlatformNotAllowedError(f"[sim] trust: {exc.message}") from exc
    if len(certs) != 1:
        raise PlatformNotAllowedError(f"[sim] trust: {sim.trust} must hold exactly one ARK")
    sha = fingerprint(certs[0])
    return SimRoot(sha), f"[sim] trust = {sim.trust.name} (sha256 {sha[:16]}...)"


def _sim_ark_matches(evidence: SnpEvidence, root: SimRoot) -> tuple[None, str]:
    assert evidence.ark is not None
    actual = fingerprint(evidence.ark)
    if actual != root.sha256:
        raise FingerprintMismatchError(
            f"the sim evidence's root {actual[:16]}... is not the one [sim] trust names"
        )
    return None, "the evidence's root is the trusted simulator ARK"


def _binding(report_data: bytes, spki: bytes, claims_der: bytes | None) -> tuple[None, str]:
    if claims_der is not None:
        if binding.matches(report_data, binding.Binding.DONJON_SHA512, spki, claims_der):
            return None, "report_data = SHA-512(CSR SPKI || workload claims)"
        raise ReportDataMismatchError(
            "report_data is not SHA-512(CSR public key || workload claims): "
            "the evidence was made for another key or workload"
        )
    if binding.matches(report_data, binding.Binding.ENARX_SHA384, spki, None):
        return None, "report_data = SHA-384(CSR SPKI), zero-padded"
    raise ReportDataMismatchError(
        "report_data is not SHA-384(CSR public key): the evidence was made for another key"
    )


def _appraised(
    ctx: _Context,
    platform: str,
    verified: SnpVerified,
    snp_policy: SnpPolicy,
    workload: WorkloadClaims | None,
    sha: str,
    csr: x509.CertificateSigningRequest | None,
    *,
    development: bool,
) -> Verdict:
    appraise_snp(verified, snp_policy, ctx.checks, workload=workload)
    if not ctx.checks.passed:
        return _rejected(
            ctx.checks, platform, sha, csr, ctx.now, snp=verified, crl_mode=ctx.used_crl_mode
        )
    report = verified.report
    result = AttestationResult(
        platform=platform,
        product=verified.product.value,
        measurement=report.measurement,
        tcb=str(report.reported_tcb),
        tcb_status=tcb_status(snp_policy),
        advisories=() if verified.chain.crl_checked else (REVOCATION_NOT_CHECKED,),
        debug=report.policy.debug_allowed,
        development=development,
        policy_id=ctx.policy.digest,
        evaluated_at=ctx.now,
        workload=workload,
    )
    return _accepted(
        ctx.checks,
        platform,
        result,
        sha,
        verified.chain.not_after_limit,
        csr,
        ctx.now,
        verified,
        crl_mode=ctx.used_crl_mode,
    )


def _accepted(
    checks: Checklist,
    platform: str,
    result: AttestationResult,
    sha: str,
    not_after: datetime | None,
    csr: x509.CertificateSigningRequest | None,
    now: datetime,
    snp: SnpVerified | None,
    *,
    crl_mode: CrlMode | None = None,
) -> Verdict:
    return Verdict(
        accepted=True,
        checks=tuple(checks.checks),
        reason=None,
        error=None,
        platform=platform,
        result=result,
        evidence_sha256=sha,
        not_after_limit=not_after,
        csr=csr,
        evaluated_at=now,
        snp=snp,
        crl_mode=crl_mode,
    )


def _rejected(
    checks: Checklist,
    platform: str,
    sha: str,
    csr: x509.CertificateSigningRequest | None,
    now: datetime,
    snp: SnpVerified | None = None,
    *,
    crl_mode: CrlMode | None = None,
) -> Verdict:
    error = checks.error
    if error is None:  # defensive: a Stop without a recorded failure must still reject
        error = AttestationError("verification stopped without a recorded reason")
    return Verdict(
        accepted=False,
        checks=tuple(checks.checks),
        reason=checks.first_failed or "internal",
        error=error,
        platform=platform,
        result=None,
        evidence_sha256=sha,
        not_after_limit=None,
        csr=csr,
        evaluated_at=now,
        snp=snp,
        crl_mode=crl_mode,
    )
