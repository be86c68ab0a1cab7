"""Judge a genuine SGX quote against ``[sgx]``: debug, attributes, measurements, versions.

Enarx's semantics are kept for Enarx's keys (``features`` and ``misc_select`` are
the bits an enclave *may* have); all checks run.
"""

from __future__ import annotations

from donjon.attestation.dcap import layout
from donjon.attestation.dcap.appraise import (
    expect_allowed,
    expect_minimum,
    expect_not_denied,
    violation,
)
from donjon.attestation.dcap.quote import EnclaveReport
from donjon.attestation.errors import EnclaveDebugError
from donjon.attestation.sgx.policy import SgxPolicy
from donjon.attestation.verdict import Checklist


def _flag_names(bits: int) -> str:
    return ", ".join(n for n, b in layout.SGX_FLAG_BITS.items() if bits & b) or f"{bits:#x}"


def appraise_enclave(report: EnclaveReport, policy: SgxPolicy, checks: Checklist) -> None:
    """The SGX-specific checks; the rules every TEE shares are applied by ``rules.py``."""
    checks.expect(
        "sgx.debug",
        not report.debug or policy.allow_debug,
        "enclave is not debuggable (DEBUG attribute clear)"
        if not report.debug
        else "enclave is debuggable, allowed by allow_debug = true",
        lambda: EnclaveDebugError(
            "the enclave's DEBUG attribute is set (its memory can be read from outside); "
            "set allow_debug = true only for development"
        ),
    )
    flags = report.flags
    if policy.features is not None:
        extra = flags & ~policy.features
        checks.expect(
            "policy.features",
            not extra,
            f"attributes {flags:#x} within the allowed features",
            lambda: violation(
                "policy.features",
                f"the enclave has features the policy does not allow: {_flag_names(extra)}",
            ),
        )
    if policy.misc_select is not None:
        extra_misc = report.miscselect_value & ~policy.misc_select
        checks.expect(
            "policy.misc_select",
            not extra_misc,
            f"MISCSELECT {report.miscselect_value:#x} allowed",
            lambda: violation(
                "policy.misc_select", f"MISCSELECT bits {extra_misc:#x} are not allowed"
            ),
        )
    expect_allowed(checks, "signer", report.mrsigner, policy.allowed("signer"))
    expect_not_denied(checks, "signer", report.mrsigner, policy.allowed("signer_deny"))
    expect_allowed(checks, "mrenclave", report.mrenclave, policy.allowed("mrenclave"))
    expect_not_denied(checks, "mrenclave", report.mrenclave, policy.allowed("mrenclave_deny"))
    for name in ("isv_ext_prod_id", "isv_family_id", "config_id"):
        expect_allowed(checks, name, getattr(report, name), policy.allowed(name))
    if policy.product_id is not None:
        wanted = policy.product_id
        checks.expect(
            "policy.enclave_product_id",
            report.isvprodid == wanted,
            f"ISVPRODID {report.isvprodid}",
            lambda: violation(
                "policy.enclave_product_id",
                f"ISVPRODID {report.isvprodid} is not the required {wanted}",
            ),
        )
    expect_minimum(checks, "isvsvn", report.isvsvn, policy.min_isvsvn)
    expect_minimum(checks, "config_svn", report.config_svn, policy.min_config_svn)
