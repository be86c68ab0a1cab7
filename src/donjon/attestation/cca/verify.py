"""Verify a CCA token: parse, find the CPAK, both signatures, and the binding between them.

Each step records a check and stops the pipeline with its own error type:

* ``cca.token``: the collection, both COSE_Sign1 and every claim parse strictly;
* ``cca.trust_anchor``: a trusted CPAK for the platform's implementation and
  instance IDs (or the one CPAK the operator named);
* ``cca.platform_signature``: the platform token is signed by that CPAK;
* ``cca.realm_signature``: the realm token is signed by the RAK it carries;
* ``cca.rak_binding``: the platform challenge is the hash of the RAK, with the
  algorithm the realm token names, so the RAK is one this platform vouched for.

The realm challenge (the key binding) is the caller's check (``binding.report_data``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from donjon.attestation.cca.anchors import TrustAnchor
from donjon.attestation.cca.token import CcaToken, PlatformClaims, digest, parse_token
from donjon.attestation.errors import (
    CcaPlatformSignatureError,
    CcaRakBindingError,
    CcaRealmSignatureError,
)
from donjon.attestation.verdict import Checklist

#: Finds the CPAK for a platform: (anchor, a reason for people), or raises.
AnchorFinder = Callable[[PlatformClaims], tuple[TrustAnchor, str]]


@dataclass(frozen=True)
class CcaVerified:
    token: CcaToken
    anchor: TrustAnchor


def verify_cca(data: bytes, *, checks: Checklist, find_anchor: AnchorFinder) -> CcaVerified:
    """Run the fail-fast checks; raises :class:`~donjon.attestation.verdict.Stop` on failure."""
    token = checks.step("cca.token", lambda: _parse(data))
    return verify_parsed(token, checks=checks, find_anchor=find_anchor)


def verify_parsed(token: CcaToken, *, checks: Checklist, find_anchor: AnchorFinder) -> CcaVerified:
    anchor = checks.step("cca.trust_anchor", lambda: find_anchor(token.platform_claims))
    checks.step("cca.platform_signature", lambda: _platform_signature(token, anchor))
    checks.step("cca.realm_signature", lambda: _realm_signature(token))
    checks.step("cca.rak_binding", lambda: _rak_binding(token))
    return CcaVerified(token, anchor)


def _parse(data: bytes) -> tuple[CcaToken, str]:
    token = parse_token(data)
    platform, realm = token.platform_claims, token.realm_claims
    return token, (
        f"platform profile {platform.profile}, {len(platform.sw_components)} components; "
        f"realm profile {realm.profile or '(legacy)'}, {realm.hash_algo}"
    )


def _platform_signature(token: CcaToken, anchor: TrustAnchor) -> tuple[None, str]:
    token.platform.verify(anchor.key, "CCA platform token", CcaPlatformSignatureError)
    return None, f"{token.platform.algorithm.name} by the CPAK of {anchor.source}"


def _realm_signature(token: CcaToken) -> tuple[None, str]:
    token.realm.verify(token.realm_claims.rak, "CCA realm token", CcaRealmSignatureError)
    return None, f"{token.realm.algorithm.name} by the RAK in the realm token"


def _rak_binding(token: CcaToken) -> tuple[None, str]:
    realm = token.realm_claims
    algorithm = realm.public_key_hash_algo
    want = digest(algorithm, realm.public_key)
    got = token.platform_claims.challenge
    if not hmac.compare_digest(got, want):
        raise CcaRakBindingError(
            f"the platform challenge is not {algorithm}(RAK): this realm token was not "
            "vouched for by this platform token"
        )
    return None, f"platform challenge = {algorithm}(RAK)"
