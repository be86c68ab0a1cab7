"""The overview's numbers: counts per platform, attestations and refusals over time, the top
refusal reasons, read so that a page costs what the last hour costs, not the whole store.

The audit store only ever adds rows, each stamped with its time. So the counts
of rows older than an hour (*settled*) do not change, and each process keeps
them: a page reads the rows of the last hour or two and the revoked rows. An
hour later, that hour is added to the settled counts; the charts' buckets and
the reasons' counts before the cutoff are kept the same way. Every few
minutes the settled counts are checked against the tables' totals, in one
statement (one snapshot): when a total is not the settled count plus the
recent one (a Steward with a fixed or wrong clock wrote an old row), they are
counted again. Every query is an index range (migration ``0005_console``):
``(issued_at, platform)``, ``(revoked_at, platform)``, ``(at, platform)`` and
``(reason, at)``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from donjon.steward.console.queries import naive, read
from donjon.steward.store import certificates, rejections

#: Rows older than this (rounded down to the hour) are settled: counted once per process.
SETTLE = timedelta(hours=1)
#: Seconds between checks of the settled counts against the tables' totals.
CHECK_EVERY = 300.0
#: Distinct refusal reasons looked at, at most (they are check ids: a few dozen).
MOST_REASONS = 1000


@dataclass(frozen=True)
class Window:
    name: str
    span: timedelta
    step: timedelta
    label: str  # strftime of a bucket's start on the chart's axis

    @property
    def buckets(self) -> int:
        return int(self.span / self.step)


WINDOWS: dict[str, Window] = {
    "hour": Window("hour", timedelta(hours=1), timedelta(minutes=5), "%H:%M"),
    "day": Window("day", timedelta(days=1), timedelta(hours=1), "%H:00"),
    "week": Window("week", timedelta(days=7), timedelta(hours=6), "%a %Hh"),
}


@dataclass(frozen=True)
class PlatformCounts:
    platform: str
    issued: int = 0
    revoked: int = 0
    refused: int = 0


@dataclass(frozen=True)
class Overview:
    platforms: list[PlatformCounts]
    totals: PlatformCounts
    window: Window
    since: datetime  # start of the first bucket (aware UTC)
    issued_series: list[int]
    refused_series: list[int]
    top_reasons: list[tuple[str, int]]

    @property
    def bucket_starts(self) -> list[datetime]:
        return [self.since + i * self.window.step for i in range(self.window.buckets)]


# --- the queries ----------------------------------------------------------------------------


def _per_platform(
    conn: Connection, column: Any, lo: datetime | None, hi: datetime | None
) -> Counter[str]:
    """Rows per platform with ``lo <= column < hi`` (an index range of (time, platform))."""
    table = column.table
    bounds = [column >= lo] if lo is not None else []
    bounds += [column < hi] if hi is not None else []
    query = sa.select(table.c.platform, sa.func.count()).where(*bounds).group_by(table.c.platform)
    return Counter({str(p): int(n) for p, n in conn.execute(query)})


def _recent_and_total(conn: Connection, column: Any, cutoff: datetime) -> tuple[Counter[str], int]:
    """Per platform since ``cutoff``, and the table's total: one statement, one snapshot."""
    table = column.table
    total = sa.select(sa.literal(0), sa.literal(""), sa.func.count()).select_from(table)
    recent = (
        sa.select(sa.literal(1), table.c.platform, sa.func.count())
        .where(column >= cutoff)
        .group_by(table.c.platform)
    )
    rows = conn.execute(sa.union_all(recent, total)).all()
    found = Counter({str(name): int(n) for kind, name, n in rows if kind == 1})
    return found, next(int(n) for kind, _, n in rows if kind == 0)


def _revoked(conn: Connection) -> Counter[str]:
    c = certificates.c
    query = sa.select(c.platform, sa.func.count()).where(c.revoked_at.is_not(None))
    return Counter({str(p): int(n) for p, n in conn.execute(query.group_by(c.platform))})


def _ranges(conn: Connection, column: Any, edges: list[tuple[datetime, datetime]]) -> list[int]:
    """Rows in each [start, end): one index range count per range, in one statement. (Grouping
    by a bucket computed per row parses every timestamp in the window: ten times slower.)"""
    if not edges:
        return []
    parts = [
        sa.select(sa.literal(i).label("i"), sa.func.count().label("n"))
        .select_from(column.table)
        .where(column >= start, column < end)
        for i, (start, end) in enumerate(edges)
    ]
    out = [0] * len(edges)
    for index, count in conn.execute(sa.union_all(*parts)):
        out[int(index)] = int(count)
    return out


#: The distinct refusal reasons by a loose index scan of (reason, at) (a seek per reason,
#: never a sort of the window's rows), each with its count in a time range.
_REASONS = """
    WITH RECURSIVE seen(reason, depth) AS (
        SELECT min(reason), 0 FROM rejections
        UNION ALL
        SELECT (SELECT min(r.reason) FROM rejections r WHERE r.reason > seen.reason),
               seen.depth + 1
        FROM seen WHERE seen.reason IS NOT NULL AND seen.depth < :most
    )
    SELECT seen.reason,
           (SELECT count(*) FROM rejections r WHERE r.reason = seen.reason AND {range})
    FROM seen WHERE seen.reason IS NOT NULL
"""
_REASONS_SINCE = sa.text(_REASONS.format(range="r.at >= :lo"))
_REASONS_BETWEEN = sa.text(_REASONS.format(range="r.at >= :lo AND r.at < :hi"))


def _reasons(conn: Connection, lo: datetime, hi: datetime | None) -> Counter[str]:
    query = _REASONS_SINCE if hi is None else _REASONS_BETWEEN
    found = conn.execute(query, {"lo": lo, "hi": hi, "most": MOST_REASONS}).all()
    return Counter({str(reason): int(n) for reason, n in found if n})


# --- what a process keeps --------------------------------------------------------------------


@dataclass
class _Table:
    """One table's settled rows (older than ``cutoff``), counted."""

    cutoff: datetime | None = None  # naive UTC, on the hour
    per_platform: Counter[str] = field(default_factory=Counter)
    buckets: dict[tuple[datetime, datetime], int] = field(default_factory=dict)
    reasons: dict[datetime, Counter[str]] = field(default_factory=dict)  # by window start
    checked: float | None = None  # when the counts were last checked against the total


class SettledCounts:
    """What one process keeps of the settled rows; thread-safe (one overview at a time).

    Checking the settled counts against the tables' totals costs a count of every row on
    PostgreSQL, so it is done at most every ``check_every`` seconds: a row written with an
    old time by a Steward whose clock is wrong shows within that long.
    """

    def __init__(
        self, check_every: float = CHECK_EVERY, ticker: Callable[[], float] = time.monotonic
    ) -> None:
        self.lock = threading.Lock()
        self._tables: dict[str, _Table] = {}
        self.recounts = 0  # full counts of a table's settled rows (tests, the bench)
        self.check_every = check_every
        self.ticker = ticker

    def table(self, conn: Connection, column: Any, now: datetime) -> tuple[_Table, Counter[str]]:
        """The table's settled state, brought to this hour's cutoff and checked against its
        total; and its rows per platform since the cutoff."""
        cutoff = naive(now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - SETTLE)
        state = self._tables.setdefault(column.table.name, _Table())
        if state.cutoff is not None and state.cutoff < cutoff:  # an hour later: add that hour
            state.per_platform += _per_platform(conn, column, state.cutoff, cutoff)
            state.cutoff = cutoff
            state.reasons.clear()
            oldest = cutoff - timedelta(days=8)
            state.buckets = {k: v for k, v in state.buckets.items() if k[0] >= oldest}
        tick = self.ticker()
        due = state.checked is None or tick - state.checked >= self.check_every
        if state.cutoff == cutoff and not due:
            return state, _per_platform(conn, column, cutoff, None)
        recent, total = _recent_and_total(conn, column, cutoff)
        state.checked = tick
        if (
            state.cutoff != cutoff
            or sum(state.per_platform.values()) + sum(recent.values()) != total
        ):
            # First use, the clock went back, or an old row appeared: count them all again.
            state.cutoff = cutoff
            state.per_platform = _per_platform(conn, column, None, cutoff)
            state.buckets.clear()
            state.reasons.clear()
            self.recounts += 1
        return state, recent

    def series(
        self, conn: Connection, column: Any, state: _Table, since: datetime, window: Window
    ) -> list[int]:
        """Rows per bucket of ``window``; a bucket wholly before the cutoff is counted once."""
        assert state.cutoff is not None
        edges = [
            (naive(since + i * window.step), naive(since + (i + 1) * window.step))
            for i in range(window.buckets)
        ]
        wanted = [edge for edge in edges if edge not in state.buckets]
        counted = dict(zip(wanted, _ranges(conn, column, wanted), strict=True))
        for edge, count in counted.items():
            if edge[1] <= state.cutoff:
                state.buckets[edge] = count
        return [counted.get(edge, state.buckets.get(edge, 0)) for edge in edges]

    def top_reasons(
        self, conn: Connection, state: _Table, since: datetime, limit: int = 6
    ) -> list[tuple[str, int]]:
        """The most frequent refusal reasons since ``since``; the settled part counted once."""
        assert state.cutoff is not None
        lo = naive(since)
        settled = state.reasons.get(lo)
        if settled is None:
            settled = _reasons(conn, lo, state.cutoff) if lo < state.cutoff else Counter()
            state.reasons[lo] = settled
        counted = settled + _reasons(conn, max(lo, state.cutoff), None)
        return sorted(counted.items(), key=lambda item: (-item[1], item[0]))[:limit]


# --- the page's numbers ----------------------------------------------------------------------


def overview(engine: Engine, now: datetime, window: Window, settled: SettledCounts) -> Overview:
    """Counts per platform (all time), and attestations and refusals over ``window``."""
    step = int(window.step.total_seconds())
    end = datetime.fromtimestamp((int(now.timestamp()) // step + 1) * step, UTC)
    since = end - window.span
    with read(engine) as conn, settled.lock:
        certs, recent_issued = settled.table(conn, certificates.c.issued_at, now)
        refs, recent_refused = settled.table(conn, rejections.c.at, now)
        issued = certs.per_platform + recent_issued
        refused = refs.per_platform + recent_refused
        revoked = _revoked(conn)
        issued_series = settled.series(conn, certificates.c.issued_at, certs, since, window)
        refused_series = settled.series(conn, rejections.c.at, refs, since, window)
        top = settled.top_reasons(conn, refs, since)
    names = sorted(set(issued) | set(refused) | set(revoked))
    platforms = [
        PlatformCounts(name, issued[name], revoked[name], refused[name])
        for name in names
        if issued[name] or refused[name] or revoked[name]
    ]
    totals = PlatformCounts(
        "all",
        sum(p.issued for p in platforms),
        sum(p.revoked for p in platforms),
        sum(p.refused for p in platforms),
    )
    return Overview(
        platforms=platforms,
        totals=totals,
        window=window,
        since=since,
        issued_series=issued_series,
        refused_series=refused_series,
        top_reasons=top,
    )
