"""Clocks for the Steward: the real one, or a fixed instant for expired test vectors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from donjon.errors import UsageError

Clock = Callable[[], datetime]
NOW_ENV = "DONJON_STEWARD_NOW"


def system_clock() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str, *, what: str = "time") -> datetime:
    """ISO 8601; ``Z`` and naive times mean UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{what} {text!r} is not an ISO 8601 time (e.g. 2023-02-01T00:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fixed_clock(instant: datetime) -> Clock:
    """A clock stopped at ``instant``: verification and issuance happen 'then'."""

    def clock() -> datetime:
        return instant

    return clock
