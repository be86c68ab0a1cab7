"""Judge a genuine TD quote against ``[tdx]``: debug, attributes, XFAM, measurements.

Everything here runs after the cryptography passed; all checks run, so that an
operator sees every reason at once.
"""

from __future__ import annotations

from donjon.attestation.dcap import layout
from donjon.attestation.dcap.appraise import (
    expect_allowed,
    expect_not_denied,
    violation,
)
from donjon.attestation.dcap.quote import TdReport
from donjon.attestation.errors import TcbBelowMinimumError, TdDebugError
from donjon.attestation.tdx.policy import REGISTERS, TdxPolicy
from donjon.attestation.verdict import Checklist

_ORDER = (
    "mrtd", "mrtd_deny",
    *(k for r in REGISTERS for k in (r, f"{r}_deny")),
    "mrconfigid", "mrowner", "mrownerconfig", "mrseam",
)  # fmt: skip


def _names(bits: int) -> str:
    return ", ".join(n for n, b in layout.TD_ATTRIBUTE_BITS.items() if bits & b) or f"{bits:#x}"


def appraise_td(td: TdReport, policy: TdxPolicy, checks: Checklist) -> None:
    """The TDX-specific checks; the rules every TEE shares are applied by ``rules.py``."""
    checks.expect(
        "tdx.debug",
        not td.debug or policy.allow_debug,
        "TD is not debuggable (DEBUG attribute clear)"
        if not td.debug
        else "TD is debuggable, allowed by allow_debug = true",
        lambda: TdDebugError(
            "the TD's DEBUG attribute is set (the host can read and change its memory); "
            "set allow_debug = true only for development"
        ),
    )
    attrs = td.attributes
    if policy.attributes_required or policy.attributes_forbidden:
        missing = policy.attributes_required & ~attrs
        present = policy.attributes_forbidden & attrs
        checks.expect(
            "policy.td_attributes",
            not missing and not present,
            f"TD attributes {attrs:#018x} as required",
            lambda: violation(
                "policy.td_attributes",
                "; ".join(
                    part
                    for part in (
                        f"required TD attributes missing: {_names(missing)}" if missing else "",
                        f"forbidden TD attributes set: {_names(present)}" if present else "",
                    )
                    if part
                ),
            ),
        )
    expect_allowed(checks, "xfam", td.xfam, policy.xfam)
    for key in _ORDER:  # only the keys the section sets, in a stable order
        values = policy.digests.get(key)
        if not values:
            continue
        if key.endswith("_deny"):
            name = key.removesuffix("_deny")
            expect_not_denied(checks, name, getattr(td, name), values)
        else:
            expect_allowed(checks, key, getattr(td, key), values)
    minimum = policy.min_tee_tcb_svn
    if minimum is not None:
        low = [i for i in range(16) if td.tee_tcb_svn[i] < minimum[i]]
        checks.expect(
            "tcb.tee_tcb_svn",
            not low,
            f"TEE_TCB_SVN {td.tee_tcb_svn.hex()} meets {minimum.hex()}",
            lambda: TcbBelowMinimumError(
                f"TEE_TCB_SVN {td.tee_tcb_svn.hex()} is below the minimum {minimum.hex()} "
                f"at byte(s) {', '.join(map(str, low))}"
            ),
        )


__all__ = ["appraise_td"]
