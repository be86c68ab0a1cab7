"""Bind the Steward to the attestation engine: the default verifier, policy and trust store.

Kept apart so that the service can be built (and tested) with any verifier,
and so that a missing or older engine is one clear error, not an ImportError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from donjon.errors import DonjonError, UsageError
from donjon.steward.contract import PolicyLike, Verifier


def _engine(name: str) -> Any:
    import donjon.attestation as attestation

    value = getattr(attestation, name, None)
    if value is None:
        raise UsageError(f"this Donjon's attestation engine does not provide {name}()")
    return value


def default_verifier() -> Verifier:
    verifier: Verifier = _engine("verify_csr")
    return verifier


def load_policy(path: Path | None) -> PolicyLike:
    """The policy file, or the engine's strict default (genuine SNP only) when none is given."""
    try:
        if path is None:
            policy: PolicyLike = _engine("Policy").default()
        else:
            policy = _engine("load_policy")(Path(path))
    except DonjonError:
        raise
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the policy {path}: {exc}") from None
    return policy


def load_trust(trust_dir: Path | None, cache_dir: Path | None = None) -> Any:
    """Vendor roots from ``trust_dir`` (offline), or fetched from AMD KDS and cached.

    Fetched roots are still checked against the fingerprints pinned in the engine.
    """
    store = _engine("TrustStore")
    if trust_dir is not None:
        try:
            return store.offline(Path(trust_dir))
        except DonjonError as exc:
            raise UsageError(f"--trust-dir: {exc.message}") from None
    return store(None, cache_dir=cache_dir, fetcher=_engine("KdsFetcher")())


def development_platforms(policy: PolicyLike) -> list[str]:
    """Which non-TEE platforms the policy lets through (shouted in the logs at start)."""
    allowed = []
    if getattr(policy, "nil_allow", False):
        allowed.append("nil")
    if getattr(policy, "kvm_allow", False):
        allowed.append("kvm")
    if getattr(policy, "sim", None) is not None:
        allowed.append("sim")
    return allowed
