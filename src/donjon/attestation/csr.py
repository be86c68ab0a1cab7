"""Verify a Keep's CSR: its self-signature, its one evidence extension, the key binding,
freshness and the policy. This is what a Steward calls before it issues a certificate.

``verify_csr`` and ``verify_report`` never raise for bad input: every failure
becomes a :class:`~donjon.attestation.verdict.Verdict` with ``accepted=False``,
the id of the failed check and a typed error. Which TEE's verifier runs is the
registry's business (``verifiers.py``); this module knows no TEE.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID

from donjon.attestation import oids
from donjon.attestation.claims import (
    EVIDENCE_NOT_FRESH,
    AttestationResult,
    ClaimsError,
    WorkloadClaims,
)
from donjon.attestation.errors import AttestationError, CsrError
from donjon.attestation.policy import Policy
from donjon.attestation.registry import (
    BareFormat,
    Registry,
    Subject,
    VerifyContext,
    VerifyOptions,
)
from donjon.attestation.rules import apply_rules, check_freshness
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.snp.product import Product
from donjon.attestation.trust import TrustStore
from donjon.attestation.verdict import UNKNOWN_PLATFORM, Appraisal, Checklist, Stop, Verdict
from donjon.attestation.verifiers import REGISTRY

#: Standard extensions a CSR may carry; the Steward ignores them (it decides SANs and usage).
_STANDARD = frozenset(
    {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
    }
)
#: More extensions than any Keep writes: a CSR with more is refused before they are read.
MAX_CSR_EXTENSIONS = 16


def verify_csr(
    csr_der: bytes,
    *,
    policy: Policy,
    trust: TrustStore,
    now: datetime,
    product: Product | None = None,
    crl_mode: CrlMode | None = None,
    options: VerifyOptions | None = None,
    registry: Registry = REGISTRY,
) -> Verdict:
    """Judge one CSR at time ``now`` (timezone-aware).

    ``crl_mode`` and ``product`` (or ``options``) override the policy for
    ``donjon attest verify``; the Steward leaves them to the policy.
    """
    options = options or VerifyOptions(crl_mode=crl_mode, product=product)
    checks = Checklist()
    platform = UNKNOWN_PLATFORM  # until the evidence extension is read: never "nil"
    evidence_sha256 = ""
    csr: x509.CertificateSigningRequest | None = None
    appraisal: Appraisal | None = None
    ctx: VerifyContext | None = None
    try:
        _require_aware(now)
        csr = checks.step("csr.parse", lambda: _parse_csr(csr_der))
        checks.step("csr.signature", lambda: _csr_signature(csr))
        evidence_ext, claims_ext = checks.step(
            "csr.extensions", lambda: _extensions(csr, registry.oids)
        )
        verifier = registry.get(evidence_ext.oid)
        assert verifier is not None  # _extensions only finds registered OIDs
        platform = verifier.platform
        evidence_value = _ext_bytes(evidence_ext)
        evidence_sha256 = hashlib.sha256(evidence_value).hexdigest()
        claims_der = _ext_bytes(claims_ext) if claims_ext is not None else None
        workload = checks.step("csr.workload_claims", lambda: _claims(claims_der))
        spki = checks.step("csr.public_key", lambda: _spki(csr))
        ctx = VerifyContext(
            checks, policy, trust, now, options, Subject(spki, claims_der, workload)
        )
        appraisal = verifier.verify(evidence_value, ctx)
        platform = appraisal.platform
        no_challenge = check_freshness(policy.freshness, workload, checks)
        notes = (EVIDENCE_NOT_FRESH,) if no_challenge else ()
        return _conclude(ctx, appraisal, evidence_sha256, csr, workload, notes)
    except Stop:
        pass
    used = ctx.used_crl_mode if ctx is not None else None
    return _rejected(checks, platform, evidence_sha256, csr, now, appraisal, crl_mode=used)


def verify_evidence(
    data: bytes,
    form: BareFormat,
    *,
    policy: Policy,
    trust: TrustStore,
    now: datetime,
    options: VerifyOptions | None = None,
) -> Verdict:
    """Judge bare evidence (no CSR, so no key binding) against the policy."""
    checks = Checklist()
    ctx = VerifyContext(checks, policy, trust, now, options or VerifyOptions(), None)
    sha = hashlib.sha256(data).hexdigest()
    appraisal: Appraisal | None = None
    try:
        _require_aware(now)
        appraisal = form.verifier.verify_bare(data, ctx)
        return _conclude(ctx, appraisal, sha, None, None, ())
    except Stop:
        pass
    return _rejected(checks, form.platform, sha, None, now, appraisal, crl_mode=ctx.used_crl_mode)


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
    """Judge a bare SNP report against the ``[snp]`` policy."""
    form = next(f for f in REGISTRY.bare_formats if f.platform == "snp")
    material = {"vcek": vcek, "chain": chain, "crls": crls}
    options = VerifyOptions(crl_mode=crl_mode, product=product, material=material)
    return verify_evidence(report, form, policy=policy, trust=trust, now=now, options=options)


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
    known: frozenset[x509.ObjectIdentifier],
) -> tuple[
    tuple[x509.Extension[x509.ExtensionType], x509.Extension[x509.ExtensionType] | None], str
]:
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CsrError(f"CSR extensions are malformed ({str(exc)[:120]})") from exc
    if len(extensions) > MAX_CSR_EXTENSIONS:
        raise CsrError(
            f"CSR carries {len(extensions)} extensions (at most {MAX_CSR_EXTENSIONS})",
            code="csr.too_many_extensions",
        )
    evidence = [e for e in extensions if e.oid in known]
    claims = [e for e in extensions if e.oid == oids.WORKLOAD_CLAIMS]
    unknown = [
        e
        for e in extensions
        if e.oid not in known and e.oid != oids.WORKLOAD_CLAIMS and e.oid not in _STANDARD
    ]
    if unknown:
        names = ", ".join(e.oid.dotted_string for e in unknown[:3])
        if len(unknown) > 3:
            names += f" and {len(unknown) - 3} more"
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
        return None, "none: the Enarx binding (a hash of the SPKI) applies"
    try:
        claims = WorkloadClaims.from_der(claims_der)
    except ClaimsError as exc:
        raise CsrError(f"workload claims: {exc}", code="csr.workload_claims") from exc
    return claims, (
        f"package {claims.package_name!r}, wasm {claims.wasm_sha256.hex()[:16]}...: "
        "binding SHA-512(SPKI || claims) applies"
    )


def _conclude(
    ctx: VerifyContext,
    appraisal: Appraisal,
    sha: str,
    csr: x509.CertificateSigningRequest | None,
    workload: WorkloadClaims | None,
    notes: tuple[str, ...],
) -> Verdict:
    """Apply the rules every TEE shares, then accept or refuse with every reason."""
    if appraisal.rules is not None:
        apply_rules(
            appraisal.rules,
            section=appraisal.section,
            pinned=appraisal.pinned,
            tcb_status=appraisal.tcb_status,
            default_statuses=appraisal.default_statuses,
            vendor_advisories=appraisal.vendor_advisories,
            workload=workload,
            checks=ctx.checks,
        )
    if not ctx.checks.passed:
        return _rejected(ctx.checks, appraisal.platform, sha, csr, ctx.now, appraisal)
    result = AttestationResult(
        platform=appraisal.platform,
        product=appraisal.product,
        measurement=appraisal.measurement,
        tcb=appraisal.tcb,
        tcb_status=appraisal.tcb_status,
        advisories=(*appraisal.vendor_advisories, *appraisal.notes, *notes),
        debug=appraisal.debug,
        development=appraisal.development,
        policy_id=ctx.policy.digest,
        evaluated_at=ctx.now,
        workload=workload,
    )
    return Verdict(
        accepted=True,
        checks=tuple(ctx.checks.checks),
        reason=None,
        error=None,
        platform=appraisal.platform,
        result=result,
        evidence_sha256=sha,
        not_after_limit=appraisal.not_after_limit,
        csr=csr,
        evaluated_at=ctx.now,
        appraisal=appraisal,
        crl_mode=appraisal.crl_mode,
    )


def _rejected(
    checks: Checklist,
    platform: str,
    sha: str,
    csr: x509.CertificateSigningRequest | None,
    now: datetime,
    appraisal: Appraisal | None,
    *,
    crl_mode: str | None = None,
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
        appraisal=appraisal,
        crl_mode=appraisal.crl_mode if appraisal is not None else crl_mode,
    )
