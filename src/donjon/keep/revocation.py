"""The Steward's CRL, as a Keep that checks its peers needs it.

A Keep that trusts its Steward (``trust = "steward"``, ``client_ca = "steward"``)
and demands a peer's workload also refuses peers the Steward has revoked. It
fetches ``GET <steward>/v1/crl`` over the same verified HTTPS as its CSR, keeps
the CRL until its nextUpdate, and checks it with the relying-party CRL rules of
:mod:`donjon.attestation.peer_x509` (issuer, signature, scope, freshness).

Unreachable means refused (fail closed) unless the entry says
``revocation = "if-available"``; then the Keep logs a warning and the peer's
revocation check is recorded as skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography import x509

from donjon.attestation.peer import CrlError, load_crl
from donjon.errors import DonjonError
from donjon.escape import escape
from donjon.keep.config_peer import Revocation

log = logging.getLogger("donjon.keep.revocation")

#: Seconds between fetch attempts after a failure: a Steward that is down is not asked
#: again on every connection (each attempt could take the whole timeout).
RETRY_AFTER_S = 10.0
FETCH_TIMEOUT_S = 10.0

Fetch = Callable[[], bytes]
Clock = Callable[[], datetime]


class CrlUnavailableError(CrlError):
    """The Steward's CRL could not be fetched, so revocation cannot be checked."""

    code = "peer.crl_unavailable"


def _now() -> datetime:
    return datetime.now(UTC)


class CrlCache:
    """One Steward's CRL: fetched on first use, kept until its nextUpdate. Thread-safe:
    the TLS listeners' handshake workers and the connect entries share one cache."""

    def __init__(
        self,
        fetch: Fetch,
        source: str,
        *,
        clock: Clock = _now,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        self.source = source
        self._fetch = fetch
        self._clock = clock
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._crl: x509.CertificateRevocationList | None = None
        self._failure: tuple[str, float] | None = None  # message, monotonic retry time
        self.fetches = 0

    def get(self) -> x509.CertificateRevocationList:
        """The current CRL, or CrlUnavailableError."""
        with self._lock:
            now = self._clock()
            cached = self._crl
            if cached is not None and _fresh(cached, now):
                return cached
            if self._failure is not None and time.monotonic() < self._failure[1]:
                raise CrlUnavailableError(self._failure[0])
            self.fetches += 1
            try:
                crl = load_crl(self._fetch(), f"the answer of {self.source}")
            except DonjonError as exc:
                message = f"cannot fetch the Steward's CRL: {exc}"
                self._failure = (message, time.monotonic() + self._retry_after_s)
                self._crl = None
                raise CrlUnavailableError(message) from None
            self._failure = None
            # A CRL that is already past its nextUpdate is not kept: the check refuses it
            # as stale, and the next peer triggers a new fetch.
            self._crl = crl if _fresh(crl, now) else None
            return crl


def _fresh(crl: x509.CertificateRevocationList, now: datetime) -> bool:
    next_update = crl.next_update_utc
    return next_update is not None and now < next_update


def current_crl(
    cache: CrlCache | None, revocation: Revocation, who: str
) -> x509.CertificateRevocationList | None:
    """The CRL to check a peer against; None when there is no source, or when the entry
    accepts an unreachable one (``if-available``, logged). Else CrlUnavailableError."""
    if cache is None:
        return None
    try:
        return cache.get()
    except CrlUnavailableError as exc:
        if revocation is Revocation.REQUIRED:
            raise CrlUnavailableError(
                f"{exc}; peers are refused while revocation cannot be checked "
                '(revocation = "if-available" accepts them unchecked)'
            ) from None
        log.warning(
            '%s: peer revocation NOT checked (revocation = "if-available"): %s',
            who,
            escape(str(exc)),
        )
        return None
