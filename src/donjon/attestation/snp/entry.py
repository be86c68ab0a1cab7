"""The registry entries for SEV-SNP evidence: Enarx's SNP extension, bare reports, and sim.

The simulated TEE emits real SNP reports from a locally generated hierarchy,
so it is verified by the same pipeline; only its root (named by the policy's
``[sim] trust``) and its label (development) differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography import x509

from donjon.attestation import binding
from donjon.attestation.claims import REVOCATION_NOT_CHECKED
from donjon.attestation.devplatforms import read_sim_root
from donjon.attestation.errors import (
    FingerprintMismatchError,
    PlatformNotAllowedError,
)
from donjon.attestation.evidence import decode_enarx_snp, decode_sim
from donjon.attestation.registry import VerifyContext, check_binding, section_of
from donjon.attestation.snp.appraise import appraise_snp
from donjon.attestation.snp.chain import CrlMode, fingerprint
from donjon.attestation.snp.policy import SNP_TCB_STATUSES, SnpPolicy
from donjon.attestation.snp.report import parse_report
from donjon.attestation.snp.verify import SimRoot, SnpEvidence, SnpVerified, verify_snp
from donjon.attestation.verdict import Appraisal

#: Size of a bare SNP report, raw.
REPORT_SIZE = 1184


def show_report(report: bytes) -> dict[str, Any]:
    """The report's fields, decoded leniently (reserved fields are not judged here)."""
    return {"report": parse_report(report, strict=False).to_dict()}


def describe_snp(verified: SnpVerified) -> Callable[[], dict[str, Any]]:
    def describe() -> dict[str, Any]:
        key = verified.key
        return {
            "product": verified.product.value,
            "report": verified.report.to_dict(),
            "endorsement_key": {
                "kind": key.kind,
                "product_name": key.product_name,
                "tcb": key.tcb,
                "hwid": key.hwid.hex() if key.hwid else None,
                "csp_id": key.csp_id,
            },
            "chain": verified.chain.describe(),
        }

    return describe


def tcb_status(policy: SnpPolicy) -> str:
    """AMD publishes no TCB status; say whether the policy appraised the TCB at all."""
    if policy.min_reported_tcb or policy.min_launch_tcb or policy.min_firmware:
        return "MeetsMinimum"
    return "NotAppraised"


def _verify(
    ctx: VerifyContext,
    evidence: SnpEvidence,
    policy: SnpPolicy,
    *,
    platform: str,
    crl_mode: CrlMode,
    sim_root: SimRoot | None,
    pinned: tuple[str, ...],
) -> Appraisal:
    ctx.used_crl_mode = crl_mode
    verified = verify_snp(
        evidence,
        trust=ctx.trust,
        now=ctx.now,
        checks=ctx.checks,
        product_hint=ctx.options.product,
        crl_mode=crl_mode,
        sim_root=sim_root,
    )
    check_binding(ctx, verified.report.report_data, enarx=binding.Binding.ENARX_SHA384)
    appraise_snp(verified, policy, ctx.checks)
    report = verified.report
    return Appraisal(
        platform=platform,
        product=verified.product.value,
        measurement=report.measurement,
        tcb=str(report.reported_tcb),
        tcb_status=tcb_status(policy),
        debug=report.policy.debug_allowed,
        section=platform,
        rules=policy.rules,
        pinned=pinned,
        default_statuses=SNP_TCB_STATUSES,
        notes=() if verified.chain.crl_checked else (REVOCATION_NOT_CHECKED,),
        development=platform == "sim",
        not_after_limit=verified.chain.not_after_limit,
        revocation_checked=verified.chain.crl_checked,
        crl_mode=crl_mode,
        describe=describe_snp(verified),
    )


class SnpEntry:
    """Enarx's SNP evidence extension (``1.3.6.1.4.1.58270.1.3``) and bare SNP reports."""

    platform = "snp"

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        policy: SnpPolicy = section_of(ctx, "snp")
        evidence = ctx.checks.step(
            "evidence.format", lambda: (decode_enarx_snp(value), "Enarx SNP evidence")
        )
        return self._judge(ctx, evidence, policy)

    def show(self, value: bytes) -> dict[str, Any]:
        return show_report(decode_enarx_snp(value).report)

    def show_bare(self, data: bytes) -> dict[str, Any]:
        return show_report(data)

    def verify_bare(self, data: bytes, ctx: VerifyContext) -> Appraisal:
        """A report from a file; its VCEK, chain and CRLs come from ``options.material``."""
        policy: SnpPolicy = section_of(ctx, "snp")
        material = ctx.options.material
        evidence = SnpEvidence(
            report=data,
            endorsement=material.get("vcek"),
            intermediates=tuple(material.get("chain", ())),
            crls=tuple(material.get("crls", ())),
        )
        return self._judge(ctx, evidence, policy)

    def _judge(self, ctx: VerifyContext, evidence: SnpEvidence, policy: SnpPolicy) -> Appraisal:
        mode = ctx.options.crl_mode or policy.crl
        return _verify(
            ctx,
            evidence,
            policy,
            platform="snp",
            crl_mode=mode,
            sim_root=None,
            pinned=policy.pinned(),
        )


class SimEntry:
    """The simulated TEE (``EVIDENCE_SIM``): SNP layout, a root the policy names, development."""

    platform = "sim"

    def show(self, value: bytes) -> dict[str, Any]:
        return show_report(decode_sim(value).report)

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        checks = ctx.checks
        root = checks.step("platform.allowed", lambda: trusted_sim_root(ctx))
        evidence = checks.step("evidence.format", lambda: (decode_sim(value), "sim evidence"))
        checks.step("sim.root", lambda: _sim_ark_matches(evidence, root))
        sim = ctx.policy.sim
        assert sim is not None  # trusted_sim_root refused otherwise
        # The simulator publishes no CRL: its evidence is always "if-available".
        return _verify(
            ctx,
            evidence,
            sim.snp,
            platform="sim",
            crl_mode="if-available",
            sim_root=root,
            pinned=("trust", *sim.snp.pinned()),
        )


def trusted_sim_root(ctx: VerifyContext) -> tuple[SimRoot, str]:
    """The simulator ARK named by ``[sim] trust``, or a ``platform.not_allowed`` refusal."""
    sim = ctx.policy.sim
    if sim is None or sim.trust is None:
        raise PlatformNotAllowedError(
            'sim evidence needs an explicit [sim] trust = "path/to/ark.pem" entry in the policy'
        )
    sha = fingerprint(read_sim_root(sim.trust, "sim"))
    return SimRoot(sha), f"[sim] trust = {sim.trust.name} (sha256 {sha[:16]}...)"


def _sim_ark_matches(evidence: SnpEvidence, root: SimRoot) -> tuple[None, str]:
    ark: x509.Certificate | None = evidence.ark
    assert ark is not None
    actual = fingerprint(ark)
    if actual != root.sha256:
        raise FingerprintMismatchError(
            f"the sim evidence's root {actual[:16]}... is not the one [sim] trust names"
        )
    return None, "the evidence's root is the trusted simulator ARK"


def sniff_report(data: bytes) -> bytes | None:
    """A raw SNP report: exactly its size."""
    return data if len(data) == REPORT_SIZE else None


def sniff_hex_report(data: bytes) -> bytes | None:
    """A hex-encoded SNP report (whitespace around it allowed)."""
    text = data.strip()
    if len(text) == 2 * REPORT_SIZE:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
    return None
