"""Judge genuine SNP evidence against the ``[snp]`` (or ``[sim]``) policy.

Everything here runs after the cryptography passed: the report is authentic,
the question is whether the owner accepts what it shows. All checks run, so
that an operator sees every reason at once; the first failure is the verdict.
"""

from __future__ import annotations

from donjon.attestation.errors import (
    DebugNotAllowedError,
    PolicyViolationError,
    TcbBelowMinimumError,
)
from donjon.attestation.snp.policy import POLICY_FLAGS_MASK, SnpPolicy
from donjon.attestation.snp.verify import SnpVerified
from donjon.attestation.verdict import Checklist


def _short(digest: bytes) -> str:
    return digest.hex()[:16] + "..."


def _violation(code: str, message: str) -> PolicyViolationError:
    return PolicyViolationError(message, code=code)


def appraise_snp(
    verified: SnpVerified,
    policy: SnpPolicy,
    checks: Checklist,
) -> None:
    """The SNP-specific checks; the rules every TEE shares are applied by ``rules.py``."""
    report = verified.report
    gp = report.policy
    checks.expect(
        "snp.debug",
        not gp.debug_allowed or policy.allow_debug,
        "guest policy forbids debugging"
        if not gp.debug_allowed
        else "guest is debuggable, allowed by allow_debug = true",
        lambda: DebugNotAllowedError(
            "the guest policy allows debugging (its memory can be read by the host); "
            "set allow_debug = true only for development"
        ),
    )
    checks.expect(
        "policy.migration_agent",
        not gp.migrate_ma_allowed or policy.allow_migration_agent,
        "no migration agent" if not gp.migrate_ma_allowed else "migration agent allowed",
        lambda: _violation(
            "policy.migration_agent",
            "the guest may be associated with a migration agent (allow_migration_agent = false)",
        ),
    )
    checks.expect(
        "policy.vmpl",
        report.vmpl in policy.vmpl,
        f"VMPL {report.vmpl}",
        lambda: _violation(
            "policy.vmpl", f"report requested at VMPL {report.vmpl}, allowed: {sorted(policy.vmpl)}"
        ),
    )
    checks.expect(
        "policy.signing_key",
        verified.key.kind in policy.signing_keys,
        f"{verified.key.kind} accepted",
        lambda: _violation("policy.signing_key", f"{verified.key.kind}-signed reports not allowed"),
    )
    if policy.products:
        checks.expect(
            "policy.product",
            verified.product in policy.products,
            verified.product.value,
            lambda: _violation(
                "policy.product", f"product line {verified.product.value} is not allowed"
            ),
        )
    if policy.abi is not None:
        abi = policy.abi
        version = (gp.abi_major, gp.abi_minor, 0)
        checks.expect(
            "policy.abi",
            abi.matches(version),
            f"guest ABI {gp.abi_major}.{gp.abi_minor} matches {abi}",
            lambda: _violation(
                "policy.abi", f"guest ABI {gp.abi_major}.{gp.abi_minor} does not match {abi}"
            ),
        )
    if policy.policy_flags is not None:
        wanted = policy.policy_flags
        actual = gp.raw & POLICY_FLAGS_MASK
        checks.expect(
            "policy.policy_flags",
            actual == wanted,
            f"guest policy flags 0x{actual:x} as required",
            lambda: _violation(
                "policy.policy_flags",
                f"guest policy flags are 0x{actual:x}, the policy requires exactly 0x{wanted:x}",
            ),
        )
    if policy.platform_info_flags is not None:
        need = policy.platform_info_flags
        have = report.platform_info.raw
        checks.expect(
            "policy.platform_info",
            have & need == need,
            f"platform_info 0x{have:x} has the required 0x{need:x}",
            lambda: _violation(
                "policy.platform_info", f"platform_info 0x{have:x} lacks the required 0x{need:x}"
            ),
        )
    _digest_checks(verified, policy, checks)
    _tcb_checks(verified, policy, checks)
    if policy.min_guest_svn is not None:
        minimum = policy.min_guest_svn
        checks.expect(
            "policy.guest_svn",
            report.guest_svn >= minimum,
            f"guest SVN {report.guest_svn} >= {minimum}",
            lambda: _violation(
                "policy.guest_svn", f"guest SVN {report.guest_svn} is below the minimum {minimum}"
            ),
        )


def _digest_checks(verified: SnpVerified, policy: SnpPolicy, checks: Checklist) -> None:
    report = verified.report
    author = report.author_key_digest if report.author_key_en else None
    if policy.signer:
        checks.expect(
            "policy.signer",
            author is not None and author in policy.signer,
            f"author key {_short(report.author_key_digest)} allowed",
            lambda: _violation(
                "policy.signer",
                "the report has no author key (author_key_en = 0)"
                if author is None
                else f"author key {author.hex()} is not an allowed signer",
            ),
        )
    if policy.signer_deny and author is not None:
        checks.expect(
            "policy.signer_deny",
            author not in policy.signer_deny,
            "author key not denied",
            lambda: _violation("policy.signer_deny", f"author key {author.hex()} is denied"),
        )
    lists = (
        ("id_key_digest", report.id_key_digest, policy.id_key_digest, policy.id_key_digest_deny),
        ("measurement", report.measurement, policy.measurement, policy.measurement_deny),
    )
    for name, value, allow, deny in lists:
        if allow:
            checks.expect(
                f"policy.{name}",
                value in allow,
                f"{name} {_short(value)} allowed",
                lambda name=name, value=value: _violation(  # type: ignore[misc]
                    f"policy.{name}", f"{name} {value.hex()} is not in the allowed list"
                ),
            )
        if deny:
            checks.expect(
                f"policy.{name}_deny",
                value not in deny,
                f"{name} not denied",
                lambda name=name, value=value: _violation(  # type: ignore[misc]
                    f"policy.{name}_deny", f"{name} {value.hex()} is denied"
                ),
            )
    exact = (
        ("host_data", report.host_data, policy.host_data),
        ("family_id", report.family_id, policy.family_id),
        ("image_id", report.image_id, policy.image_id),
    )
    for name, value, allow in exact:
        if allow:
            checks.expect(
                f"policy.{name}",
                value in allow,
                f"{name} {_short(value)} allowed",
                lambda name=name, value=value: _violation(  # type: ignore[misc]
                    f"policy.{name}", f"{name} {value.hex()} is not allowed"
                ),
            )


def _tcb_checks(verified: SnpVerified, policy: SnpPolicy, checks: Checklist) -> None:
    report = verified.report
    minimums = (
        ("tcb.reported", policy.min_reported_tcb, report.reported_tcb),
        ("tcb.launch", policy.min_launch_tcb, report.launch_tcb),
    )
    for check_id, minimum, tcb in minimums:
        if minimum is None:
            continue
        short = minimum.shortfalls(tcb.components())
        checks.expect(
            check_id,
            not short,
            f"{tcb} meets the minimum",
            lambda check_id=check_id, short=short: TcbBelowMinimumError(  # type: ignore[misc]
                f"{check_id.split('.')[1]} TCB below the minimum: {', '.join(short)}"
            ),
        )
    if policy.min_firmware is not None:
        need = policy.min_firmware
        fw = report.current_fw
        have = (fw.major, fw.minor, fw.build)
        checks.expect(
            "tcb.firmware",
            have >= need,
            f"firmware {fw} >= {'.'.join(map(str, need))}",
            lambda: TcbBelowMinimumError(
                f"firmware {fw} is below the minimum {'.'.join(map(str, need))}"
            ),
        )


def tcb_status(policy: SnpPolicy) -> str:
    """AMD publishes no TCB status; say whether the policy appraised the TCB at all."""
    if policy.min_reported_tcb or policy.min_launch_tcb or policy.min_firmware:
        return "MeetsMinimum"
    return "NotAppraised"
