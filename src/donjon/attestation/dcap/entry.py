"""What the SGX and TDX registry entries share: options from the context, and the Appraisal.

``judge`` runs the DCAP pipeline for one quote under one policy section and
returns the generic :class:`~donjon.attestation.verdict.Appraisal` plus the
verified quote, so that a caller that binds the quote differently (Azure's
vTPM wraps a TD quote) can read its report_data itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from donjon.attestation import binding
from donjon.attestation.claims import (
    QE_IDENTITY_NOT_APPRAISED,
    REVOCATION_NOT_CHECKED,
    TCB_NOT_APPRAISED,
)
from donjon.attestation.dcap.chain import RootPin
from donjon.attestation.dcap.collateral import CollateralBundle
from donjon.attestation.dcap.fetch import INTEL_PCS_URL, IntelFetcher, PcsFetcher
from donjon.attestation.dcap.policy import CollateralPolicy
from donjon.attestation.dcap.quote import TdReport
from donjon.attestation.dcap.store import Pool, intel_store, load_bundle_file
from donjon.attestation.dcap.verify import (
    INTEL_ROOT,
    DcapOptions,
    DcapVerified,
    QeIdentityMode,
    verify_quote,
)
from donjon.attestation.dcap.verify import (
    TCB_NOT_APPRAISED as NOT_APPRAISED_STATUS,
)
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.registry import VerifyContext, check_binding
from donjon.attestation.rules import TeeRules
from donjon.attestation.verdict import Appraisal


@dataclass(frozen=True)
class QuoteJudgement:
    """A verified quote and the Appraisal that the shared rules will then judge."""

    appraisal: Appraisal
    verified: DcapVerified

    @property
    def report_data(self) -> bytes:
        return self.verified.quote.report_data


@dataclass(frozen=True)
class Section:
    """A TEE section's view for ``judge``: its rules, pins, collateral keys and defaults."""

    name: str
    rules: TeeRules
    pinned: tuple[str, ...]
    collateral: CollateralPolicy
    default_statuses: frozenset[str]


def material_pools(ctx: VerifyContext) -> tuple[Pool, ...]:
    """``--collateral FILE`` (``options.material["collateral"]``: a path or a bundle)."""
    given = ctx.options.material.get("collateral")
    if given is None:
        return ()
    bundle = load_bundle_file(Path(given)) if isinstance(given, (str, Path)) else given
    if not isinstance(bundle, CollateralBundle):
        raise MalformedEvidenceError("the collateral given is not a collateral bundle")
    # One Pool per bundle object, so that what is memoised for it is found again.
    store = intel_store(ctx.trust)
    pool = store.memo_lookup("bundle_pool", id(bundle), (bundle,))
    if not isinstance(pool, Pool):
        pool = Pool.of_bundle(bundle, f"--collateral {bundle.source}", explicit=True)
        store.memo_store("bundle_pool", id(bundle), (bundle,), pool)
    return (pool,)


def fetcher_for(ctx: VerifyContext, collateral: CollateralPolicy) -> IntelFetcher | None:
    """A PCCS named by ``--pccs`` or the policy; Intel PCS when the context fetches at all."""
    material = ctx.options.material
    given = material.get("intel_fetcher")
    if given is not None:
        fetcher: IntelFetcher = given
        return fetcher
    url = material.get("pccs") or collateral.pccs_url
    if url:
        return PcsFetcher(str(url))
    if ctx.trust.fetcher is not None or material.get("fetch"):
        return PcsFetcher(INTEL_PCS_URL)
    return None


def judge(
    quote: bytes,
    ctx: VerifyContext,
    section: Section,
    *,
    platform: str,
    tee: str,
    evidence_pools: Sequence[Pool] = (),
    pin: RootPin = INTEL_ROOT,
    qe_identity_default: QeIdentityMode = "require",
    bind: binding.Binding | bool | None = True,
    appraise: Callable[[DcapVerified], None],
    describe_extra: dict[str, Any] | None = None,
) -> QuoteJudgement:
    """Verify ``quote`` (recording checks), bind it (unless ``bind`` is False), appraise it.

    ``bind`` is the Enarx binding for Enarx CSRs, None where Enarx defined none, or
    False when the caller binds report_data itself.
    """
    options = ctx.options
    collateral = section.collateral
    crl_mode = options.crl_mode or collateral.crl
    tcb_mode = options.tcb_mode or collateral.tcb_mode
    if options.tcb_mode == "if-available" and options.crl_mode is None:
        crl_mode = "if-available"  # --tcb-mode if-available also accepts missing CRLs
    pools = tuple(evidence_pools)
    if options.material.get("collateral") is not None:
        pools += ctx.checks.step("dcap.collateral_file", lambda: _file(ctx))
    dcap_options = DcapOptions(
        pin=pin,
        crl_mode=crl_mode,
        tcb_mode=tcb_mode,
        qe_identity=collateral.qe_identity or qe_identity_default,
        fetcher=fetcher_for(ctx, collateral),
        pools=pools,
        tee=tee,
    )
    ctx.used_crl_mode = crl_mode
    verified = verify_quote(
        quote, store=intel_store(ctx.trust), now=ctx.now, checks=ctx.checks, options=dcap_options
    )
    if bind is not False:
        enarx = bind if isinstance(bind, binding.Binding) else None
        check_binding(ctx, verified.quote.report_data, enarx=enarx)
    appraise(verified)
    notes: list[str] = []
    if not verified.revocation.checked:
        notes.append(REVOCATION_NOT_CHECKED)
    rules = section.rules
    if verified.tcb is None:
        notes.append(TCB_NOT_APPRAISED)
        # tcb_mode = "if-available" was chosen explicitly: NotAppraised is what it accepts.
        accepted = rules.tcb_statuses or section.default_statuses
        rules = replace(rules, tcb_statuses=accepted | {NOT_APPRAISED_STATUS})
    elif verified.collateral.qe_identity is None:
        notes.append(QE_IDENTITY_NOT_APPRAISED)
    body = verified.quote.body
    pck = verified.pck

    def describe() -> dict[str, Any]:
        return {"product": _product(verified), **verified.describe(), **(describe_extra or {})}

    # NAME=NUMBER pairs (a relying party's min_tcb reads them); byte strings as 0x... numbers.
    tcb = f"fmspc=0x{pck.fmspc.hex()} pcesvn={pck.tcb.pcesvn} cpusvn=0x{pck.tcb.cpusvn.hex()}"
    if isinstance(body, TdReport):
        measurement = body.mrtd
        tcb = f"tee_tcb_svn=0x{body.tee_tcb_svn.hex()} " + tcb
    else:
        measurement = body.mrenclave
    appraisal = Appraisal(
        platform=platform,
        product=_product(verified),
        measurement=measurement,
        tcb=tcb,
        tcb_status=verified.tcb_status,
        debug=body.debug,
        section=section.name,
        rules=rules,
        pinned=section.pinned,
        default_statuses=section.default_statuses,
        vendor_advisories=verified.advisories,
        notes=tuple(notes),
        development=platform == "sim",
        not_after_limit=verified.not_after_limit,
        revocation_checked=verified.revocation.checked,
        crl_mode=crl_mode,
        describe=describe,
    )
    return QuoteJudgement(appraisal, verified)


def _file(ctx: VerifyContext) -> tuple[tuple[Pool, ...], str]:
    pools = material_pools(ctx)
    return pools, pools[0].source


def _product(verified: DcapVerified) -> str:
    quote = verified.quote
    kind = "TDX 1.5" if quote.body_type == 3 else quote.tee
    return f"{kind} FMSPC {verified.pck.fmspc.hex()}"
