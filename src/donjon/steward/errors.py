"""Errors of the Steward: each refusal has its own type, HTTP status and code."""

from __future__ import annotations

from typing import Any

from donjon.errors import DonjonError, UsageError


class StewardError(DonjonError):
    """A Steward operation that failed; ``status`` and ``code`` feed problem+json bodies."""

    status: int = 400
    code: str = "steward-error"

    def __init__(
        self,
        message: str,
        *,
        check: str | None = None,
        hint: str | None = None,
        checks: list[dict[str, Any]] | None = None,
        evidence_sha256: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.check = check
        self.checks = checks or []
        self.evidence_sha256 = evidence_sha256


class MalformedRequest(StewardError):
    status = 400
    code = "malformed-request"


class UnsupportedMediaType(StewardError):
    status = 415
    code = "unsupported-media-type"


class RequestTooLarge(StewardError):
    status = 413
    code = "request-too-large"


class AttestationRefused(StewardError):
    """The evidence did not prove what the policy demands."""

    status = 403
    code = "attestation-refused"


class EvidenceNotAuthentic(AttestationRefused):
    """The evidence itself failed: signature, chain, key binding, revocation, expiry."""

    status = 401
    code = "evidence-not-authentic"


class KeyRevoked(AttestationRefused):
    """The CSR's key belongs to a revoked certificate: a revoked key stays revoked."""

    status = 403
    code = "revoked.key"


class NotFresh(AttestationRefused):
    """The evidence's challenge nonce is unknown to this Steward, used, or expired."""

    status = 403
    code = "freshness.nonce"


class KeyAlgorithmMismatch(AttestationRefused):
    """The CSR key is weaker than the platform's binding demands (anti-downgrade)."""

    code = "key-algorithm-mismatch"


class Unauthorized(StewardError):
    status = 401
    code = "unauthorized"


class Forbidden(StewardError):
    status = 403
    code = "forbidden"


class NotFound(StewardError):
    status = 404
    code = "not-found"


class Overloaded(StewardError):
    """Too many attestations in flight, or one took too long: try again later."""

    status = 503
    code = "overloaded"


class CANotValid(StewardError):
    """The CA is not valid at the evaluation time: a Steward configuration problem."""

    status = 503
    code = "ca-not-valid"


class CAUnavailable(StewardError):
    """The CA key could not sign now (an HSM or its session is gone): try again later."""

    status = 503
    code = "ca-unavailable"


class ShuttingDown(StewardError):
    """This replica is draining before it exits: retry (another replica will answer)."""

    status = 503
    code = "shutting-down"


class StoreError(StewardError):
    """The audit store could not be read or written (the request is not answered)."""

    status = 503
    code = "store-unavailable"


class CAError(UsageError):
    """The CA certificate or key is missing, malformed or inconsistent."""


class StoreConfigError(UsageError):
    """A bad ``--db`` URL or an unreadable store."""
