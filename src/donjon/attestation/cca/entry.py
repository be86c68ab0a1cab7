"""The registry entry for Arm CCA: the ``EVIDENCE_CCA`` CSR extension and bare token files.

The CPAK that must have signed the platform token is found, in this order:

1. in the trust anchors of ``[cca] trust_anchors`` and of the command line
   (``--trust-anchors``), by the token's implementation and instance IDs;
2. the one CPAK the operator named on the command line (``--cpak``);
3. the simulator's CPAK, named by ``[sim] cca_cpak``: the result is then
   ``platform = sim`` (product ``cca``), a development certificate judged by
   ``[sim]``'s rules, never a CCA one.

A platform listed in a real trust-anchor store is never judged as the simulator,
whatever key signed it: its token must verify with the listed CPAK.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from donjon.attestation.cca.anchors import AnchorError, AnchorStore, TrustAnchor, load_cpak
from donjon.attestation.cca.appraise import appraise_cca, check_lifecycle, tcb_summary
from donjon.attestation.cca.evidence import decode_cca_evidence
from donjon.attestation.cca.policy import CCA_TCB_STATUSES, CcaPolicy
from donjon.attestation.cca.token import (
    DEBUG_STATES,
    SECURED,
    CcaToken,
    PlatformClaims,
    is_token,
    parse_token,
)
from donjon.attestation.cca.verify import CcaVerified, verify_cca
from donjon.attestation.errors import CcaTrustAnchorError, PlatformNotAllowedError
from donjon.attestation.registry import VerifyContext, check_binding
from donjon.attestation.verdict import Appraisal

#: ``VerifyOptions.material`` key: an :class:`AnchorStore` from the command line.
MATERIAL_ANCHORS = "cca_anchors"
#: The product a simulated CCA platform's results name.
SIM_PRODUCT = "cca"


def show_token(token: bytes) -> dict[str, Any]:
    """Every claim of both tokens (bytes as lowercase hex), nothing verified."""
    return {"token": parse_token(token).to_dict()}


class CcaEntry:
    """Arm CCA evidence: ``EVIDENCE_CCA`` in a CSR, or a bare token file."""

    platform = "cca"

    def show(self, value: bytes) -> dict[str, Any]:
        return show_token(decode_cca_evidence(value))

    def show_bare(self, data: bytes) -> dict[str, Any]:
        return show_token(data)

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        allowed = ctx.checks.step("platform.allowed", lambda: _allowed(ctx))
        token = ctx.checks.step(
            "evidence.format", lambda: (decode_cca_evidence(value), "Donjon CCA evidence")
        )
        return _judge(ctx, token, allowed)

    def verify_bare(self, data: bytes, ctx: VerifyContext) -> Appraisal:
        allowed = ctx.checks.step("platform.allowed", lambda: _allowed(ctx))
        return _judge(ctx, data, allowed)


class _Allowed:
    """What the policy (and command line) let this verifier trust."""

    def __init__(self, policy: CcaPolicy | None, store: AnchorStore, sim_cpak: Path | None) -> None:
        self.policy = policy
        self.store = store
        self.sim_cpak = sim_cpak
        self.sim = False  # set when the simulator's CPAK was the one found


def _allowed(ctx: VerifyContext) -> tuple[_Allowed, str]:
    section = ctx.policy.tees.get("cca")
    policy = section if isinstance(section, CcaPolicy) else None
    sim = ctx.policy.sim
    sim_cpak = sim.cca_cpak if sim is not None else None
    if policy is None and sim_cpak is None:
        raise PlatformNotAllowedError(
            "the policy has no [cca] section, so CCA evidence is not accepted: add one that "
            "names the trust anchors and pins the realm"
        )
    store = policy.anchors if policy is not None else AnchorStore()
    given = ctx.options.material.get(MATERIAL_ANCHORS)
    if isinstance(given, AnchorStore):
        store = store.merged(given)
    parts = []
    if policy is not None:
        parts.append("[cca] section of the policy")
    if sim_cpak is not None:
        parts.append(f"[sim] cca_cpak = {sim_cpak.name} (development)")
    return _Allowed(policy, store, sim_cpak), ", ".join(parts)


def _finder(allowed: _Allowed) -> Callable[[PlatformClaims], tuple[TrustAnchor, str]]:
    def find(claims: PlatformClaims) -> tuple[TrustAnchor, str]:
        impl, inst = claims.implementation_id, claims.instance_id
        anchor = allowed.store.find(impl, inst)
        if anchor is None and allowed.store.bare:
            anchor = allowed.store.bare[0]
        if anchor is not None:
            if allowed.policy is None:
                raise PlatformNotAllowedError(
                    "this token's CPAK is a real trust anchor, but the policy has no [cca] "
                    "section (only [sim] cca_cpak)"
                )
            if anchor.implementation_id is None:
                return anchor, f"the CPAK given on the command line ({anchor.source})"
            return anchor, f"CPAK of implementation {impl.hex()[:16]}... from {anchor.source}"
        if allowed.sim_cpak is not None:
            try:
                store = load_cpak(allowed.sim_cpak)
            except AnchorError as exc:
                raise PlatformNotAllowedError(f"[sim] cca_cpak: {exc}") from exc
            allowed.sim = True
            return store.bare[0], "the simulator's CPAK ([sim] cca_cpak, development only)"
        raise CcaTrustAnchorError(
            f"no trusted CPAK for implementation-id {impl.hex()} instance-id {inst.hex()}: "
            "add it to [cca] trust_anchors (a tastore.json), or give --cpak / --trust-anchors"
        )

    return find


def _judge(ctx: VerifyContext, data: bytes, allowed: _Allowed) -> Appraisal:
    verified = verify_cca(data, checks=ctx.checks, find_anchor=_finder(allowed))
    token = verified.token
    check_binding(ctx, token.realm_claims.challenge, enarx=None)
    if allowed.sim:
        return _sim_appraisal(ctx, verified)
    policy = allowed.policy
    assert policy is not None  # the finder refuses a real anchor without [cca]
    appraise_cca(token, policy, ctx.checks)
    appraised = bool(policy.platform_references)
    return Appraisal(
        platform="cca",
        product=token.platform_claims.implementation_id.hex(),
        measurement=token.realm_claims.initial_measurement,
        tcb=tcb_summary(token),
        tcb_status="MeetsMinimum" if appraised else "NotAppraised",
        debug=token.platform_claims.lifecycle_state in DEBUG_STATES,
        section="cca",
        rules=policy.rules,
        pinned=policy.pinned(),
        default_statuses=CCA_TCB_STATUSES,
        describe=_describe(verified),
    )


def _sim_appraisal(ctx: VerifyContext, verified: CcaVerified) -> Appraisal:
    sim = ctx.policy.sim
    assert sim is not None  # the simulator's CPAK came from it
    token = verified.token
    check_lifecycle(token, {SECURED}, ctx.checks)
    return Appraisal(
        platform="sim",
        product=SIM_PRODUCT,
        measurement=token.realm_claims.initial_measurement,
        tcb=tcb_summary(token),
        tcb_status="NotAppraised",
        debug=False,
        section="sim",
        rules=sim.snp.rules,
        pinned=("cca_cpak",),
        default_statuses=CCA_TCB_STATUSES,
        development=True,
        describe=_describe(verified),
    )


def _describe(verified: CcaVerified) -> Callable[[], dict[str, Any]]:
    def describe() -> dict[str, Any]:
        return {
            "product": verified.token.platform_claims.implementation_id.hex(),
            "trust_anchor": verified.anchor.source,
            **verified.token.to_dict(),
        }

    return describe


def sniff_token(data: bytes) -> bytes | None:
    """A CCA token file: CBOR tag 399 (raw bytes)."""
    return data if is_token(data) else None


__all__ = ["MATERIAL_ANCHORS", "CcaEntry", "CcaToken", "sniff_token"]
