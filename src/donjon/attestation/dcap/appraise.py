"""Policy checks SGX and TDX sections share: allow and deny lists of measurements, minimums.

All of them run (``Checklist.expect``), so that an operator sees every reason at once.
"""

from __future__ import annotations

from donjon.attestation.errors import PolicyViolationError
from donjon.attestation.verdict import Checklist


def violation(code: str, message: str) -> PolicyViolationError:
    return PolicyViolationError(message, code=code)


def short(value: bytes) -> str:
    return value.hex()[:16] + "..."


def expect_allowed(checks: Checklist, name: str, value: bytes, allow: frozenset[bytes]) -> None:
    """``policy.<name>``: ``value`` is in the allow-list (skipped when the list is empty)."""
    if not allow:
        return
    checks.expect(
        f"policy.{name}",
        value in allow,
        f"{name} {short(value)} allowed",
        lambda: violation(f"policy.{name}", f"{name} {value.hex()} is not in the allowed list"),
    )


def expect_not_denied(checks: Checklist, name: str, value: bytes, deny: frozenset[bytes]) -> None:
    """``policy.<name>_deny``: ``value`` is not in the deny-list (skipped when empty)."""
    if not deny:
        return
    checks.expect(
        f"policy.{name}_deny",
        value not in deny,
        f"{name} not denied",
        lambda: violation(f"policy.{name}_deny", f"{name} {value.hex()} is denied"),
    )


def expect_minimum(checks: Checklist, name: str, have: int, minimum: int | None) -> None:
    if minimum is None:
        return
    checks.expect(
        f"policy.{name}",
        have >= minimum,
        f"{name} {have} >= {minimum}",
        lambda: violation(f"policy.{name}", f"{name} {have} is below the minimum {minimum}"),
    )
