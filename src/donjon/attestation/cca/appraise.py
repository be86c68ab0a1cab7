"""Judge a genuine CCA token against ``[cca]``: lifecycle, platform and realm reference values.

All checks run after the cryptography passed, so that an operator sees every
reason at once; the first failure is the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable

from donjon.attestation.cca.policy import CcaPolicy
from donjon.attestation.cca.token import CcaToken
from donjon.attestation.errors import CcaLifecycleError, PolicyViolationError
from donjon.attestation.verdict import Checklist


def _short(value: bytes) -> str:
    return value.hex()[:16] + "..."


def _violation(code: str, message: str) -> PolicyViolationError:
    return PolicyViolationError(message, code=code)


def check_lifecycle(token: CcaToken, allowed: Iterable[str], checks: Checklist) -> None:
    state = token.platform_claims.lifecycle_state
    permitted = frozenset(allowed)
    checks.expect(
        "cca.lifecycle",
        state in permitted,
        f"platform lifecycle {state} (0x{token.platform_claims.lifecycle:04x})",
        lambda: CcaLifecycleError(
            f"the platform is in lifecycle state {state} "
            f"(0x{token.platform_claims.lifecycle:04x}), not one of {', '.join(sorted(permitted))}"
            + ("; its root of trust can be debugged" if "debug" in state else "")
        ),
    )


def appraise_cca(token: CcaToken, policy: CcaPolicy, checks: Checklist) -> None:
    """The CCA-specific policy checks; the rules every TEE shares come after (``rules.py``)."""
    platform, realm = token.platform_claims, token.realm_claims
    check_lifecycle(token, policy.lifecycle, checks)
    if policy.implementation_ids:
        checks.expect(
            "policy.implementation_id",
            platform.implementation_id in policy.implementation_ids,
            f"implementation-id {_short(platform.implementation_id)} allowed",
            lambda: _violation(
                "policy.implementation_id",
                f"implementation-id {platform.implementation_id.hex()} is not in "
                "implementation_ids",
            ),
        )
    if policy.platform_config:
        checks.expect(
            "policy.platform_config",
            platform.config in policy.platform_config,
            f"platform config {_short(platform.config)} allowed",
            lambda: _violation(
                "policy.platform_config",
                f"platform config {platform.config.hex()} is not in platform_config",
            ),
        )
    if policy.platform_references:
        reasons = [ref.mismatch(platform) for ref in policy.platform_references]
        matched = next(
            (
                ref
                for ref, why in zip(policy.platform_references, reasons, strict=True)
                if why is None
            ),
            None,
        )
        first = next((why for why in reasons if why is not None), "")
        checks.expect(
            "policy.sw_components",
            matched is not None,
            f"{len(platform.sw_components)} firmware components match "
            f"{matched.source if matched else ''}",
            lambda: _violation(
                "policy.sw_components",
                f"the platform matches none of {len(reasons)} platform reference value(s): {first}",
            ),
        )
    _allowed(checks, "policy.rim", "rim", realm.initial_measurement, policy.rim)
    for index, (value, allowed) in enumerate(
        zip(realm.extensible_measurements, policy.rems, strict=True)
    ):
        _allowed(checks, f"policy.rem{index}", f"rem{index}", value, allowed)
    _allowed(
        checks,
        "policy.personalization_value",
        "personalization_value",
        realm.personalization_value,
        policy.personalization_value,
    )
    if policy.realm_references:
        checks.expect(
            "policy.realm_reference",
            any(ref.matches(realm) for ref in policy.realm_references),
            "RIM and REMs match a realm reference value",
            lambda: _violation(
                "policy.realm_reference",
                f"the realm (RIM {_short(realm.initial_measurement)}) matches none of "
                f"{len(policy.realm_references)} realm reference value(s)",
            ),
        )


def _allowed(
    checks: Checklist, check_id: str, key: str, value: bytes, allowed: frozenset[bytes]
) -> None:
    if not allowed:
        return
    checks.expect(
        check_id,
        value in allowed,
        f"{key} {_short(value)} allowed",
        lambda: _violation(check_id, f"{key} {value.hex()} is not in the policy's {key}"),
    )


def tcb_summary(token: CcaToken) -> str:
    """The platform firmware, one ``TYPE=measurement-prefix`` per component."""
    return " ".join(
        f"{c.type or f'#{i}'}={c.measurement.hex()[:16]}"
        for i, c in enumerate(token.platform_claims.sw_components)
    )
