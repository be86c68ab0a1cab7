"""The registry entries for Intel SGX: Enarx's SGX extension, and bare SGX quotes.

Enarx's extension carries the quote with TCB Info and Intel's CRLs, but never a
QE Identity (Enarx's Steward did not judge the quoting enclave). Donjon looks
for one in its other sources and, for this format only, accepts its absence by
default, saying so in the certificate (``qe-identity-not-appraised``); a policy
with ``qe_identity = "require"`` refuses instead.
"""

from __future__ import annotations

from typing import Any

from donjon.attestation import binding
from donjon.attestation.dcap.bare import show_quote
from donjon.attestation.dcap.entry import QuoteJudgement, Section, judge
from donjon.attestation.dcap.quote import EnclaveReport
from donjon.attestation.dcap.store import Pool
from donjon.attestation.registry import VerifyContext, section_of
from donjon.attestation.sgx.appraise import appraise_enclave
from donjon.attestation.sgx.evidence import decode_enarx_sgx
from donjon.attestation.sgx.policy import SgxPolicy
from donjon.attestation.verdict import Appraisal


def verify_sgx_quote(
    quote: bytes,
    ctx: VerifyContext,
    *,
    policy: SgxPolicy | None = None,
    collateral: tuple[Pool, ...] = (),
    enarx: bool = False,
) -> QuoteJudgement:
    """Verify an SGX quote end to end and judge it against ``[sgx]`` (or ``policy``)."""
    chosen: SgxPolicy = policy if policy is not None else section_of(ctx, "sgx")

    def appraise(verified: Any) -> None:
        body = verified.quote.body
        assert isinstance(body, EnclaveReport)  # judge(tee="SGX") refused anything else
        appraise_enclave(body, chosen, ctx.checks)

    section = Section(
        name="sgx",
        rules=chosen.rules,
        pinned=chosen.pinned(),
        collateral=chosen.collateral,
        default_statuses=chosen.default_statuses,
    )
    return judge(
        quote,
        ctx,
        section,
        platform="sgx",
        tee="SGX",
        evidence_pools=collateral,
        qe_identity_default="if-available" if enarx else "require",
        bind=binding.Binding.ENARX_SHA256,
        appraise=appraise,
    )


class SgxEntry:
    """Enarx's SGX evidence (``1.3.6.1.4.1.58270.1.2``) and bare SGX quotes."""

    platform = "sgx"

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        policy: SgxPolicy = section_of(ctx, "sgx")
        evidence = ctx.checks.step(
            "evidence.format", lambda: (decode_enarx_sgx(value), "Enarx SGX evidence")
        )
        return verify_sgx_quote(
            evidence.quote, ctx, policy=policy, collateral=evidence.pools(), enarx=True
        ).appraisal

    def verify_bare(self, data: bytes, ctx: VerifyContext) -> Appraisal:
        policy: SgxPolicy = section_of(ctx, "sgx")
        return verify_sgx_quote(data, ctx, policy=policy).appraisal

    def show(self, value: bytes) -> dict[str, Any]:
        evidence = decode_enarx_sgx(value)
        shown = show_quote(evidence.quote)
        shown["evidence_collateral"] = {
            "crls": [c.issuer.rfc4514_string() for c in evidence.crls],
            "certificates": [c.subject.rfc4514_string() for c in evidence.certs],
            "tcb_info": evidence.tcb_info is not None,
        }
        return shown

    def show_bare(self, data: bytes) -> dict[str, Any]:
        return show_quote(data)
