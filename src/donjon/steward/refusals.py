"""Refusals as the Steward logs and stores them: bounded, so that a flood of bad
requests cannot fill the disk or forge log lines.

Every message that quotes a request is cut to a few hundred characters and
escaped to one line. Each process stores and logs at most ``per_minute``
refusals a minute; beyond that they are counted, and one summary row and one
log line per minute say how many were not stored individually (the metrics
still count every one).
"""

from __future__ import annotations

import logging
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
class RefusalRecorder:
    """Stores and logs refusals within a per-process budget; summarises the rest."""

    store: AuditStore
    per_minute: int = 120
    ticker: Callable[[], float] = time.monotonic
    _window_start: float | None = None
    _window_first: datetime | None = None
    _in_window: int = 0
    _suppressed: Counter[str] = field(default_factory=Counter)

    def record(
        self, error: StewardError, *, platform: str, evidence_sha256: str, now: datetime
    ) -> None:
        reason = bounded(error.check or error.code, 64)
        self._roll(now)
        self._in_window += 1
        if self._in_window > self.per_minute:
            self._suppressed[reason] += 1
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

    def flush(self, now: datetime) -> None:
        """Write the summary of refusals not stored one by one (on roll-over and at exit)."""
        if not self._suppressed:
            return
        total = sum(self._suppressed.values())
        top = ", ".join(f"{reason} x{n}" for reason, n in self._suppressed.most_common(5))
        detail = (
            f"{total} refusals in the minute after {self._window_first:%Y-%m-%dT%H:%M:%S%z} "
            f"were over the budget of {self.per_minute} and not stored one by one: {top}"
        )
        log.warning("refusal flood: %s", detail)
        self._store(Rejection(now, "flood.summary", 429, "unknown", "", detail))
        self._suppressed.clear()

    def _roll(self, now: datetime) -> None:
        tick = self.ticker()
        start = self._window_start
        if start is None or tick - start >= WINDOW:
            self.flush(now)
            self._window_start = tick
            self._window_first = now
            self._in_window = 0

    def _store(self, rejection: Rejection) -> None:
        try:
            self.store.record_rejection(rejection)
        except StewardError as exc:  # the refusal stands even if it cannot be counted
            log.error("could not record a rejection: %s", exc.message)
