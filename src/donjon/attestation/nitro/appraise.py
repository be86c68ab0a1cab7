"""Judge a genuine Nitro document against ``[nitro]``: debug mode and the pinned PCRs."""

from __future__ import annotations

from collections.abc import Callable

from donjon.attestation.errors import NitroDebugError, PolicyViolationError
from donjon.attestation.nitro.document import NitroDocument
from donjon.attestation.nitro.policy import PCR_MEANINGS, NitroPolicy
from donjon.attestation.verdict import Checklist

#: The PCRs that a debug-mode enclave reports as all zeros.
DEBUG_PCRS = (0, 1, 2)


def is_debug(document: NitroDocument) -> bool:
    """A debug-mode enclave: its image PCRs are all zeros (the parent can read its memory)."""
    return all(index in document.pcrs and not any(document.pcrs[index]) for index in DEBUG_PCRS)


def appraise_nitro(document: NitroDocument, policy: NitroPolicy, checks: Checklist) -> None:
    debug = is_debug(document)
    checks.expect(
        "nitro.debug",
        not debug or policy.allow_debug,
        "production enclave (PCR0-2 are measurements)"
        if not debug
        else "debug-mode enclave, allowed by allow_debug = true",
        lambda: NitroDebugError(
            "PCR0, PCR1 and PCR2 are all zeros: a debug-mode enclave, whose memory the "
            "parent instance can read; set allow_debug = true only for development"
        ),
    )
    for index, allowed in sorted(policy.pcrs.items()):
        if not allowed:
            continue
        value = document.pcrs.get(index)
        meaning = PCR_MEANINGS[index]
        checks.expect(
            f"policy.pcr{index}",
            value is not None and value in allowed,
            f"PCR{index} ({meaning}) {value.hex()[:16] if value else ''}... allowed",
            _mismatch(index, value, meaning),
        )


def _mismatch(index: int, value: bytes | None, meaning: str) -> Callable[[], PolicyViolationError]:
    def error() -> PolicyViolationError:
        shown = "absent" if value is None else value.hex()
        return PolicyViolationError(
            f"PCR{index} ({meaning}) is {shown}, not one of the policy's pcr{index}",
            code=f"policy.pcr{index}",
        )

    return error
