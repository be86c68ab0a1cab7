"""Judge genuine Azure evidence against ``[azure]``: PCRs, VM configuration, hardware.

Everything here runs after the cryptography passed. All checks run, so that
an operator sees every reason at once; the hardware part is judged by the SNP
appraisal with ``[azure.snp]`` (or the TDX one with ``[azure.tdx]``).
"""

from __future__ import annotations

from donjon.attestation.azure.policy import AzurePolicy
from donjon.attestation.azure.verify import AzureVerified
from donjon.attestation.errors import PolicyViolationError
from donjon.attestation.snp.appraise import appraise_snp
from donjon.attestation.verdict import Checklist


def _violation(code: str, message: str) -> PolicyViolationError:
    return PolicyViolationError(message, code=code)


def appraise_azure(verified: AzureVerified, policy: AzurePolicy, checks: Checklist) -> None:
    vm = verified.claims.vm
    checks.expect(
        "policy.console",
        not vm.console_enabled or policy.allow_console,
        "serial console disabled"
        if not vm.console_enabled
        else "serial console enabled, allowed by allow_console = true",
        lambda: _violation(
            "policy.console",
            "the VM has a serial console enabled (a way into the guest for whoever may open "
            "it in the cloud's portal); set allow_console = true in [azure] only if that is "
            "acceptable",
        ),
    )
    if policy.secure_boot:
        checks.expect(
            "policy.secure_boot",
            vm.secure_boot,
            "Secure Boot on",
            lambda: _violation(
                "policy.secure_boot",
                "the VM booted without Secure Boot ([azure] secure_boot = true requires it)",
            ),
        )
    if policy.tpm_enabled:
        checks.expect(
            "policy.tpm_enabled",
            vm.tpm_enabled,
            "vTPM enabled",
            lambda: _violation(
                "policy.tpm_enabled", "the runtime claims say the vTPM is not enabled"
            ),
        )
    if policy.vm_unique_id:
        checks.expect(
            "policy.vm_unique_id",
            vm.vm_unique_id.upper() in policy.vm_unique_id,
            f"vmUniqueId {vm.vm_unique_id} allowed",
            lambda: _violation(
                "policy.vm_unique_id", f"vmUniqueId {vm.vm_unique_id} is not in vm_unique_id"
            ),
        )
    if policy.pcrs:
        wrong = []
        for index, allowed in sorted(policy.pcrs.items()):
            value = verified.pcrs.get(index)
            if value is None:
                wrong.append(f"PCR {index} is not in the quote")
            elif value not in allowed:
                wrong.append(f"PCR {index} is {value.hex()}")
        names = ", ".join(str(i) for i in sorted(policy.pcrs))
        checks.expect(
            "policy.pcrs",
            not wrong,
            f"PCRs {names} have the expected values",
            lambda: _violation(
                "policy.pcrs", "; ".join(wrong) + " (not the value [azure] pcrs expects)"
            ),
        )
    if verified.snp is not None:
        appraise_snp(verified.snp, policy.snp, checks)
