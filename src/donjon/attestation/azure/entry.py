"""The registry entry for Azure evidence: Donjon's extension, bare HCL reports, Trustee JSON.

A bare HCL report needs its vTPM quote beside it (``material["tpm_quote"]``,
Trustee's ``{"message", "signature", "pcrs"}`` JSON), and the hardware's
collateral (``vcek``/``chain``, or ``td_quote`` for TDX). Trustee's evidence
JSON carries all of that in one file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from donjon.attestation.azure.appraise import appraise_azure
from donjon.attestation.azure.evidence import (
    AzureEvidence,
    TpmQuote,
    decode_azure_evidence,
    load_json,
    parse_trustee_evidence,
    parse_trustee_quote,
)
from donjon.attestation.azure.hcl import HardwareKind, parse_hcl_report
from donjon.attestation.azure.policy import AzurePolicy
from donjon.attestation.azure.runtime import parse_runtime_claims
from donjon.attestation.azure.tdreport import parse_td_report
from donjon.attestation.azure.tpm import parse_attest
from donjon.attestation.azure.verify import AzureVerified, describe_quote, verify_azure
from donjon.attestation.claims import REVOCATION_NOT_CHECKED
from donjon.attestation.registry import VerifyContext, section_of
from donjon.attestation.snp.entry import describe_snp, tcb_status
from donjon.attestation.snp.policy import SNP_TCB_STATUSES
from donjon.attestation.snp.report import parse_report
from donjon.attestation.verdict import Appraisal


class AzureEntry:
    """``oids.EVIDENCE_AZURE``, and the bare forms ``donjon attest`` recognises."""

    #: The flavour (azure-snp, azure-tdx) is known once the HCL report is read.
    platform = "azure"

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        policy: AzurePolicy = section_of(ctx, "azure")
        evidence = ctx.checks.step(
            "evidence.format", lambda: (decode_azure_evidence(value), "Donjon Azure evidence")
        )
        return _judge(ctx, evidence, policy)

    def show(self, value: bytes) -> dict[str, Any]:
        return show_evidence(decode_azure_evidence(value))

    def verify_bare(self, data: bytes, ctx: VerifyContext) -> Appraisal:
        policy: AzurePolicy = section_of(ctx, "azure")
        evidence = ctx.checks.step("evidence.format", lambda: _bare(data, ctx))
        return _judge(ctx, evidence, policy)

    def show_bare(self, data: bytes) -> dict[str, Any]:
        if data[:4] == b"HCLA":
            return show_evidence(AzureEvidence(data, None))
        return show_evidence(parse_trustee_evidence(data))


def _bare(data: bytes, ctx: VerifyContext) -> tuple[AzureEvidence, str]:
    if data[:4] != b"HCLA":
        return parse_trustee_evidence(data), "Trustee Azure vTPM evidence JSON"
    material = ctx.options.material
    raw = material.get("tpm_quote")
    quote: TpmQuote | None = None
    if raw is not None:
        quote = parse_trustee_quote(load_json(raw, "TPM quote"), "TPM quote")
    return AzureEvidence(data, quote, td_quote=material.get("td_quote")), "HCL report" + (
        " with its TPM quote" if quote else ""
    )


def _judge(ctx: VerifyContext, evidence: AzureEvidence, policy: AzurePolicy) -> Appraisal:
    verified = verify_azure(evidence, ctx, policy)
    appraise_azure(verified, policy, ctx.checks)
    if verified.tdx is not None:
        # The DCAP verifier's appraisal (TCB status, advisories, notes), under [azure]'s pins.
        return replace(
            verified.tdx.appraisal,
            platform=verified.platform,
            section="azure",
            pinned=policy.pinned(),
            describe=_describe(verified),
        )
    snp = verified.snp
    assert snp is not None
    report = snp.report
    notes = () if snp.chain.crl_checked else (REVOCATION_NOT_CHECKED,)
    return Appraisal(
        platform=verified.platform,
        product=snp.product.value,
        measurement=report.measurement,
        tcb=str(report.reported_tcb),
        tcb_status=tcb_status(policy.snp),
        debug=report.policy.debug_allowed,
        section="azure",
        rules=policy.rules,
        pinned=policy.pinned(),
        default_statuses=SNP_TCB_STATUSES,
        notes=notes,
        development=verified.development,
        not_after_limit=snp.chain.not_after_limit,
        revocation_checked=snp.chain.crl_checked,
        crl_mode=verified.crl_mode,
        describe=_describe(verified),
    )


def _describe(verified: AzureVerified) -> Callable[[], dict[str, Any]]:
    def describe() -> dict[str, Any]:
        out: dict[str, Any] = {
            "azure": {
                "flavour": verified.platform,
                "hcl_report": verified.hcl.to_dict(),
                "runtime_claims": verified.claims.to_dict(),
                "quote": describe_quote(verified.quote, verified.pcrs),
                "development": verified.development,
            }
        }
        if verified.snp is not None:
            out.update(describe_snp(verified.snp)())
        if verified.tdx is not None and verified.tdx.appraisal.describe is not None:
            out.update(verified.tdx.appraisal.describe())
        if verified.td_report is not None:
            out["td_report"] = verified.td_report.to_dict()
        return out

    return describe


def show_evidence(evidence: AzureEvidence) -> dict[str, Any]:
    """Every decoded field, verifying nothing (bytes as lowercase hex)."""
    hcl = parse_hcl_report(evidence.hcl_report)
    out: dict[str, Any] = {
        "platform": hcl.kind.platform,
        "hcl_report": hcl.to_dict(),
        "runtime_claims": parse_runtime_claims(hcl.runtime_claims).to_dict(),
    }
    if hcl.kind is HardwareKind.SNP:
        out["report"] = parse_report(hcl.hardware_report, strict=False).to_dict()
    else:
        out["td_report"] = parse_td_report(hcl.hardware_report).to_dict()
    if evidence.quote is not None:
        info = parse_attest(evidence.quote.attest)
        selected = info.selections[0].pcrs if info.selections else ()
        pcrs = dict(zip(selected, evidence.quote.pcrs, strict=False))
        out["quote"] = describe_quote(info, pcrs)
    if evidence.certificates:
        out["certificates"] = [c.subject.rfc4514_string() for c in evidence.certificates]
    if evidence.td_quote is not None:
        out["td_quote_size"] = len(evidence.td_quote)
    return out
