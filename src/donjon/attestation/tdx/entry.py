"""The registry entries for Intel TDX: Donjon's TDX extension, bare quotes, and the sim's TDX.

The simulated TEE's TDX product emits real v4 quotes under a locally generated
Intel-like hierarchy, so it runs this very pipeline; only its root (named by
the policy's ``[sim.tdx] trust``) and its label (platform ``sim``) differ.

:func:`verify_td_quote` is the entry point for verifiers that wrap a TD quote
(Azure's vTPM evidence): the whole DCAP pipeline and the ``[tdx]`` checks, with
the binding of report_data left to the caller when it binds differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from donjon.attestation.dcap.bare import show_quote
from donjon.attestation.dcap.chain import RootPin
from donjon.attestation.dcap.entry import QuoteJudgement, Section, judge
from donjon.attestation.dcap.quote import TdReport
from donjon.attestation.dcap.store import Pool
from donjon.attestation.devplatforms import read_sim_root
from donjon.attestation.errors import (
    PlatformNotAllowedError,
)
from donjon.attestation.registry import VerifyContext, section_of
from donjon.attestation.snp.chain import fingerprint
from donjon.attestation.tdx.appraise import appraise_td
from donjon.attestation.tdx.evidence import decode_tdx_evidence
from donjon.attestation.tdx.policy import TDX_TCB_STATUSES, TdxPolicy
from donjon.attestation.verdict import Appraisal


def _section(name: str, policy: TdxPolicy, *, pinned: tuple[str, ...] = ()) -> Section:
    return Section(
        name=name,
        rules=policy.rules,
        pinned=(*pinned, *policy.pinned()),
        collateral=policy.collateral,
        default_statuses=TDX_TCB_STATUSES,
    )


def verify_td_quote(
    quote: bytes,
    ctx: VerifyContext,
    *,
    policy: TdxPolicy | None = None,
    collateral: Sequence[Pool] = (),
    bind: bool = True,
    platform: str = "tdx",
    section: str = "tdx",
) -> QuoteJudgement:
    """Verify a TD quote end to end and judge it against ``[tdx]`` (or ``policy``).

    Records every check in ``ctx.checks`` and raises :class:`~donjon.attestation.verdict.Stop`
    after a fail-fast failure, like every registry entry. ``bind=False`` leaves
    ``binding.report_data`` to the caller (``QuoteJudgement.report_data``); the shared
    rules (statuses, advisories, workloads) are applied afterwards by ``csr.py`` to
    ``QuoteJudgement.appraisal``.
    """
    chosen: TdxPolicy = policy if policy is not None else section_of(ctx, "tdx")

    def appraise(verified: Any) -> None:
        body = verified.quote.body
        assert isinstance(body, TdReport)  # judge(tee="TDX") refused anything else
        appraise_td(body, chosen, ctx.checks)

    return judge(
        quote,
        ctx,
        _section(section, chosen),
        platform=platform,
        tee="TDX",
        evidence_pools=collateral,
        bind=bind,
        appraise=appraise,
    )


class TdxEntry:
    """Donjon's TDX evidence (``EVIDENCE_TDX``) and bare TD quotes (raw, hex or base64)."""

    platform = "tdx"

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        policy: TdxPolicy = section_of(ctx, "tdx")
        evidence = ctx.checks.step(
            "evidence.format", lambda: (decode_tdx_evidence(value), "Donjon TDX evidence")
        )
        return verify_td_quote(
            evidence.quote, ctx, policy=policy, collateral=evidence.pools()
        ).appraisal

    def verify_bare(self, data: bytes, ctx: VerifyContext) -> Appraisal:
        policy: TdxPolicy = section_of(ctx, "tdx")
        return verify_td_quote(data, ctx, policy=policy).appraisal

    def show(self, value: bytes) -> dict[str, Any]:
        evidence = decode_tdx_evidence(value)
        shown = show_quote(evidence.quote)
        if evidence.collateral is not None:
            shown["collateral"] = evidence.collateral.source or "in the evidence"
        return shown

    def show_bare(self, data: bytes) -> dict[str, Any]:
        return show_quote(data)


class SimTdxEntry:
    """The simulated TEE's TDX product (``EVIDENCE_SIM_TDX``): real layout, a root the
    policy names in ``[sim.tdx] trust``, development label."""

    platform = "sim"

    def show(self, value: bytes) -> dict[str, Any]:
        return {"simulated": True, **show_quote(decode_tdx_evidence(value).quote)}

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        checks = ctx.checks
        pin, policy = checks.step("platform.allowed", lambda: _sim_tdx_root(ctx))
        evidence = checks.step(
            "evidence.format", lambda: (decode_tdx_evidence(value), "sim TDX evidence")
        )
        pools = evidence.pools()

        def appraise(verified: Any) -> None:
            body = verified.quote.body
            assert isinstance(body, TdReport)
            appraise_td(body, policy, checks)

        return judge(
            evidence.quote,
            ctx,
            # As [sim]: the simulator's root is its pin (its certificates say development).
            _section("sim.tdx", policy, pinned=("trust",)),
            platform="sim",
            tee="TDX",
            evidence_pools=pools,
            pin=pin,
            appraise=appraise,
            describe_extra={"simulated": True},
        ).appraisal


def _sim_tdx_root(ctx: VerifyContext) -> tuple[tuple[RootPin, TdxPolicy], str]:
    sim = ctx.policy.sim
    tdx = sim.tdx if sim is not None else None
    if tdx is None or tdx.trust is None:
        raise PlatformNotAllowedError(
            'sim TDX evidence needs an explicit [sim.tdx] trust = "path/to/root.pem" entry '
            "in the policy (development only)"
        )
    sha = fingerprint(read_sim_root(tdx.trust, "sim.tdx"))
    pin = RootPin(sha, f"simulated root [sim.tdx] trust = {tdx.trust.name}")
    return (pin, tdx.policy), f"[sim.tdx] trust = {tdx.trust.name} (sha256 {sha[:16]}...)"


__all__ = ["SimTdxEntry", "TdxEntry", "verify_td_quote"]
