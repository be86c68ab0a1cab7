"""Registry entries for evidence that proves no TEE (nil, Enarx KVM).

A development platform is accepted only where the policy says ``[nil] allow`` /
``[kvm] allow``; its certificates say development=True everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509

from donjon.attestation.errors import MalformedEvidenceError, PlatformNotAllowedError
from donjon.attestation.evidence import check_kvm, check_nil
from donjon.attestation.registry import VerifyContext
from donjon.attestation.verdict import Appraisal


class DevEntry:
    """``nil`` (Donjon, DER NULL) or ``kvm`` (Enarx, empty): no TEE, no evidence."""

    def __init__(self, platform: str) -> None:
        if platform not in ("nil", "kvm"):
            raise ValueError(f"not a development platform: {platform}")
        self.platform = platform

    def show(self, value: bytes) -> dict[str, Any]:
        return {"evidence": f"{self.platform}: no TEE, no evidence"}

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        platform = self.platform
        allowed = ctx.policy.nil_allow if platform == "nil" else ctx.policy.kvm_allow

        def form() -> tuple[None, str]:
            (check_nil if platform == "nil" else check_kvm)(value)
            return None, f"{platform} evidence (no TEE)"

        def allowance() -> tuple[None, str]:
            if not allowed:
                raise PlatformNotAllowedError(
                    f"{platform} evidence proves no TEE; the policy needs [{platform}] allow = true"
                )
            return None, f"[{platform}] allow = true: development certificate"

        ctx.checks.step("evidence.format", form)
        ctx.checks.step("platform.allowed", allowance)
        return Appraisal(
            platform=platform,
            product="",
            measurement=b"",
            tcb="",
            tcb_status="NoTEE",
            debug=True,
            section=platform,
            rules=None,
            development=True,
        )


def read_sim_root(path: Path, section: str) -> x509.Certificate:
    """The one root certificate a simulator's ``trust`` entry names (``[sim]``, ``[sim.tdx]``).

    Every failure is a ``platform.allowed`` refusal naming the section and the file.
    """
    from donjon.attestation.trust import parse_cert_bundle

    try:
        certs = parse_cert_bundle(path.read_bytes(), str(path))
    except OSError as exc:
        raise PlatformNotAllowedError(
            f"[{section}] trust: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    except MalformedEvidenceError as exc:
        raise PlatformNotAllowedError(f"[{section}] trust: {exc.message}") from exc
    if len(certs) != 1:
        raise PlatformNotAllowedError(
            f"[{section}] trust: {path} must hold exactly one root certificate"
        )
    return certs[0]
