"""What the Steward needs from the attestation engine, as structural types.

The engine (``donjon.attestation``) owns evidence verification and policy.
The Steward only reads a few fields of its results, so it states them here as
protocols: tests can inject a fake verifier, and the Steward never depends on
the engine's internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509

from donjon.attestation.claims import AttestationResult


class PolicyLike(Protocol):
    """A loaded Steward policy: only what issuance reads."""

    @property
    def digest(self) -> str: ...  # the policy id (the file and the files it names)

    @property
    def text_digest(self) -> str: ...  # SHA-256 hex of the policy file alone

    @property
    def cert_lifetime(self) -> timedelta: ...

    @property
    def san_dns(self) -> Sequence[str]: ...


class CheckLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def passed(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    @property
    def status(self) -> str: ...  # passed | failed | not_checked


class VerdictLike(Protocol):
    """The engine's judgement of one CSR. ``verify_csr`` never raises for bad input."""

    @property
    def accepted(self) -> bool: ...

    @property
    def checks(self) -> Sequence[CheckLike]: ...

    @property
    def reason(self) -> str | None: ...  # id of the first failed check

    @property
    def error(self) -> Any: ...  # AttestationError | None, has ``.code``

    @property
    def platform(self) -> str: ...

    @property
    def result(self) -> AttestationResult | None: ...

    @property
    def evidence_sha256(self) -> str: ...

    @property
    def not_after_limit(self) -> datetime | None: ...

    @property
    def csr(self) -> x509.CertificateSigningRequest | None: ...


class Verifier(Protocol):
    """``donjon.attestation.verify_csr`` or a test double with the same signature."""

    def __call__(
        self, csr_der: bytes, *, policy: Any, trust: Any, now: datetime
    ) -> VerdictLike: ...
