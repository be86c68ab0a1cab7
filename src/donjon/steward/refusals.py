"""Refusals as the Steward logs and stores them: bounded, so that a flood of bad
requests cannot fill the disk or forge log lines.

Every message that quotes a request is cut to a few hundred characters and
escaped to one line. Each process stores and logs at most ``per_minute``
refusals a minute (attestations and secret releases each have a budget);
beyond that they are counted, and one summary row and one log line per minute
say how many were not stored individually (the metrics still count every one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from donjon.steward.errors import StewardError
from donjon.steward.store import AuditStore, Rejection

log = logging.getLogger("donjon.steward")

#: The longest quote of a request in a log line, a stored refusal or an error body.
MAX_QUOTE = 300
#: Seconds of one budget window (measured on a monotonic clock, not the Steward's).
WINDOW = 60.0


def bounded(text: str, limit: int = MAX_QUOTE) -> str:
    """One line, at most ``limit`` characters (and says how much was cut)."""
    flat = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}...(+{len(flat) - limit} chars)"


@dataclass
class FloodBudget:
    """At most ``per_minute`` refusals a minute are stored and logged one by one; the rest
    are counted by reason and summarised once, when the next minute starts.

    A refusal costs its sender nothing, so every endpoint that records refusals spends
    from a budget: attestations (:class:`RefusalRecorder`) and secret releases.
    """

    per_minute: int = 120
    ticker: Callable[[], float] = time.monotonic
    _window_start: float | None = field(default=None, init=False)
    _window_first: datetime | None = field(default=None, init=False)
    _in_window: int = field(default=0, init=False)
    _suppressed: Counter[str] = field(default_factory=Counter, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def admit(self, reason: str, now: datetime) -> bool:
        """Whether this refusal gets its own row and log line (else it is only counted)."""
        with self._lock:
            summary = self._roll(now)
            self._in_window += 1
            admitted = self._in_window <= self.per_minute
            if not admitted:
                self._suppressed[reason] += 1
        if summary is not None:
            self.summarise(summary, now)
        return admitted

    def flush(self, now: datetime) -> None:
        """Write the summary of refusals not stored one by one (on roll-over and at exit)."""
        with self._lock:
            summary = self._take_summary()
        if summary is not None:
            self.summarise(summary, now)

    def summarise(self, detail: str, now: datetime) -> None:
        log.warning("refusal flood: %s", detail)

    def _take_summary(self) -> str | None:
        if not self._suppressed:
            return None
        total = sum(self._suppressed.values())
        top = ", ".join(f"{reason} x{n}" for reason, n in self._suppressed.most_common(5))
        self._suppressed.clear()
        return (
            f"{total} refusals in the minute after {self._window_first:%Y-%m-%dT%H:%M:%S%z} "
            f"were over the budget of {self.per_minute} and not stored one by one: {top}"
        )

    def _roll(self, now: datetime) -> str | None:
        tick = self.ticker()
        start = self._window_start
        if start is not None and tick - start < WINDOW:
            return None
        summary = self._take_summary()
        self._window_start = tick
        self._window_first = now
        self._in_window = 0
        return summary


@dataclass
class RefusalRecorder(FloodBudget):
    """Stores and logs refused attestations within the budget; summarises the rest."""

    store: AuditStore = field(kw_only=True)

    def record(
        self, error: StewardError, *, platform: str, evidence_sha256: str, now: datetime
    ) -> None:
        reason = bounded(error.check or error.code, 64)
        if not self.admit(reason, now):
            return
        detail = bounded(error.message)
        log.warning(
            "refused attestation: platform=%s reason=%s status=%d evidence_sha256=%s: %s",
            platform,
            reason,
            error.status,
            evidence_sha256,
            detail,
        )
        self._store(Rejection(now, reason, error.status, platform, evidence_sha256, detail))

    def summarise(self, detail: str, now: datetime) -> None:
        super().summarise(detail, now)
        self._store(Rejection(now, "flood.summary", 429, "unknown", "", detail))

    def _store(self, rejection: Rejection) -> None:
        try:
            self.store.record_rejection(rejection)
        except StewardError as exc:  # the refusal stands even if it cannot be counted
            log.error("could not record a rejection: %s", exc.message)
