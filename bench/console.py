"""Console overview at 10^5 certificates: the page against a bare ``SELECT count(*)``.

Fills an audit store with ``--rows`` certificates (realistic row sizes: a DER
certificate, claims and a ~40-check verdict) and as many refusals, spread over
two weeks, by bulk insert; then, in the same run and interleaved, times

* the baseline: ``SELECT count(*) FROM certificates`` on the same engine;
* the overview's queries for the first page of a process (which counts the settled rows,
  those older than an hour, once; console/overview.py), and for every page after it;
* the whole overview page in process (the ASGI app, session cookie, queries, SVG, template);
* the page through HTTPS on 127.0.0.1 (uvicorn, TLS 1.3);
* the queries with the console's indexes dropped (what migration 0005_console buys).

SQLite always; PostgreSQL too with ``--postgres`` (a throwaway cluster from
Debian's package, as the tests start it) or ``--db postgresql://...``. Each
query's plan is printed with the index it uses. Goal: the page < 100 ms.

    python bench/console.py [--rows 100000] [--repeat 15] [--postgres] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from common import Row, free_port, report, throwaway_postgres, write_self_signed
from donjon.attestation import Policy
from donjon.steward.app import AppSettings, create_app
from donjon.steward.ca import CertificateAuthority
from donjon.steward.console import overview
from donjon.steward.console.overview import SettledCounts
from donjon.steward.server import ServeOptions, build_server
from donjon.steward.service import Steward
from donjon.steward.store import AuditStore, certificates, rejections

GOAL_MS = 100.0
TOKEN = "bench-console-token-0123456789"
PLATFORMS = (("snp", 60), ("tdx", 20), ("sim", 15), ("nil", 5))
REASONS = ("policy.workload", "snp.chain", "csr.parse", "policy.tcb_status", "freshness.nonce_used")
#: The console's indexes (store.py, migration 0005_console) and the queries that use them.
CONSOLE_INDEXES = {
    "ix_certificates_issued_at": ("certificates", ("issued_at", "platform")),
    "ix_certificates_revoked_platform": ("certificates", ("revoked_at", "platform")),
    "ix_rejections_at": ("rejections", ("at", "platform")),
    "ix_rejections_reason_at": ("rejections", ("reason", "at")),
}


# --- filling the store ---------------------------------------------------------------------


def _rows(count: int, now: datetime) -> Iterator[list[dict[str, Any]]]:
    der = secrets.token_bytes(700)  # a P-384 leaf with Donjon's extensions is ~700 bytes
    checks = [{"id": f"snp.check_{i}", "passed": True, "reason": "x" * 60} for i in range(40)]
    verdict = json.dumps({"accepted": True, "checks": checks}, sort_keys=True)
    weights = [name for name, share in PLATFORMS for _ in range(share)]
    batch: list[dict[str, Any]] = []
    span = timedelta(days=14).total_seconds()
    for i in range(count):
        at = (now - timedelta(seconds=span * i / count)).replace(tzinfo=None)
        workload = format(i % 5000, "064x")
        claims = {
            "platform": weights[i % 100],
            "measurement": format(i % 97, "096x"),
            "tcb": "bl=3 tee=0 snp=8 ucode=115",
            "tcb_status": "UpToDate",
            "workload": {"wasm_sha256": workload, "package_name": f"app-{i % 50}"},
        }
        batch.append(
            {
                "serial": format(10**12 + i, "x"),
                "issued_at": at,
                "not_before": at,
                "not_after": at + timedelta(days=28),
                "subject_key_sha256": format(i, "064x"),
                "platform": weights[i % 100],
                "development": weights[i % 100] in ("sim", "nil"),
                "workload_sha256": workload,
                "claims": json.dumps(claims, sort_keys=True),
                "verdict": verdict,
                "evidence_sha256": format(i * 7, "064x"),
                "policy_digest": "cd" * 32,
                "certificate_der": der,
                "revoked_at": at + timedelta(hours=1) if i % 50 == 0 else None,
                "revocation_reason": "superseded" if i % 50 == 0 else None,
            }
        )
        if len(batch) == 5000:
            yield batch
            batch = []
    if batch:
        yield batch


def _refusals(count: int, now: datetime) -> Iterator[list[dict[str, Any]]]:
    span = timedelta(days=14).total_seconds()
    batch: list[dict[str, Any]] = []
    for i in range(count):
        batch.append(
            {
                "at": (now - timedelta(seconds=span * i / count)).replace(tzinfo=None),
                "reason": REASONS[i % len(REASONS)],
                "status": 403,
                "platform": PLATFORMS[i % 4][0],
                "evidence_sha256": format(i, "064x"),
                "detail": "attestation refused: " + "y" * 150,
            }
        )
        if len(batch) == 5000:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(store: AuditStore, rows: int, refusals: int, now: datetime) -> float:
    started = time.perf_counter()
    with store.engine.begin() as conn:
        for batch in _rows(rows, now):
            conn.execute(certificates.insert(), batch)
        for batch in _refusals(refusals, now):
            conn.execute(rejections.insert(), batch)
    if store.engine.dialect.name == "postgresql":
        # What autovacuum does on a live store: statistics and the visibility map
        # (without which no scan is index-only).
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


# --- measuring -------------------------------------------------------------------------------


def _ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def plans(engine: sa.Engine, now: datetime) -> list[str]:
    """The plan of each kind of query a page runs, as the database will run it."""
    params = {
        "cut": (now - timedelta(hours=1)).replace(tzinfo=None),
        "a": (now - timedelta(hours=2)).replace(tzinfo=None),
        "b": (now - timedelta(hours=1)).replace(tzinfo=None),
        "r": REASONS[0],
    }
    sqls = {
        "issued per platform, last hour": "SELECT platform, count(*) FROM certificates "
        "WHERE issued_at >= :cut GROUP BY platform",
        "revoked per platform": "SELECT platform, count(*) FROM certificates "
        "WHERE revoked_at IS NOT NULL GROUP BY platform",
        "refused per platform, last hour": "SELECT platform, count(*) FROM rejections "
        "WHERE at >= :cut GROUP BY platform",
        "a chart bucket": "SELECT count(*) FROM certificates WHERE issued_at >= :a "
        "AND issued_at < :b",
        "a refusals bucket": "SELECT count(*) FROM rejections WHERE at >= :a AND at < :b",
        "next reason": "SELECT min(reason) FROM rejections WHERE reason > :r",
        "a reason since": "SELECT count(*) FROM rejections WHERE reason = :r AND at >= :cut",
        "baseline": "SELECT count(*) FROM certificates",
    }
    out = []
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        for name, sql in sqls.items():
            rows = conn.execute(sa.text(prefix + sql), params).all()
            lines = [str(r[-1]).strip() for r in rows]
            used = [line for line in lines if "INDEX" in line.upper() or "Scan" in line]
            out.append(f"plan, {name}: {' / '.join(used or lines)[:150]}")
    return out


def drop_console_indexes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for name in CONSOLE_INDEXES:
            conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))


def create_console_indexes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for name, (table, columns) in CONSOLE_INDEXES.items():
            conn.execute(sa.text(f"CREATE INDEX {name} ON {table} ({', '.join(columns)})"))
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE"))


class Page:
    """The overview through the ASGI app in process, and through HTTPS on 127.0.0.1."""

    def __init__(self, store: AuditStore, tmp: Path) -> None:
        now = datetime.now(UTC)
        policy = Policy.from_toml("[nil]\nallow = true\n", source="bench", base_dir=tmp)
        self.steward = Steward(
            ca=CertificateAuthority.create(curve="p384", now=now),
            policy=policy,
            trust=None,
            store=store,
            verifier=lambda *a, **k: None,  # type: ignore[arg-type,return-value]
            clock=lambda: datetime.now(UTC),
        )
        settings = AppSettings(admin_token=TOKEN, console="on", development=True)
        self.app = create_app(self.steward, settings)
        cert, key = write_self_signed(tmp, common_name="bench")
        self.context = ssl.create_default_context(cafile=str(cert))
        options = ServeOptions(host="127.0.0.1", port=free_port(), tls_cert=cert, tls_key=key,
                               log_level="warning")  # fmt: skip
        self.server = build_server(self.app, options)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.url = f"https://127.0.0.1:{options.port}"
        self.http = httpx.Client(base_url=self.url, verify=self.context, timeout=60)
        r = self.http.post("/console/signin", data={"token": TOKEN})
        assert r.status_code == 303, r.text
        self.cookies = dict(self.http.cookies)
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        self.local = httpx.AsyncClient(
            transport=transport, base_url="https://console.bench", cookies=self.cookies
        )

    def in_process(self, window: str) -> float:
        async def get() -> None:
            r = await self.local.get(f"/console?range={window}")
            assert r.status_code == 200, r.text[:300]

        return _ms(lambda: self.loop.run_until_complete(get()))

    def over_https(self, window: str) -> float:
        def get() -> None:
            r = self.http.get(f"/console?range={window}")
            assert r.status_code == 200, r.text[:300]

        return _ms(get)

    def close(self) -> None:
        self.loop.run_until_complete(self.local.aclose())
        self.loop.close()
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


def measure(store: AuditStore, label: str, repeat: int, tmp: Path) -> tuple[list[Row], list[str]]:
    engine = store.engine
    now = datetime.now(UTC)

    def count() -> float:
        def run() -> None:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT count(*) FROM certificates")).scalar()

        return _ms(run)

    page = Page(store, tmp)
    rows: list[Row] = []
    try:
        for _ in range(2):  # warm caches and pools, as a running Steward has them
            count()
            page.in_process("day")
        for window in ("day", "week"):
            ours: dict[str, list[float]] = {"cold": [], "queries": [], "page": [], "https": []}
            base: list[float] = []
            settled = SettledCounts()
            spec = overview.WINDOWS[window]
            for _ in range(repeat):
                base.append(count())
                ours["cold"].append(
                    _ms(lambda: overview.overview(engine, now, spec, SettledCounts()))  # noqa: B023
                )
                ours["queries"].append(
                    _ms(lambda: overview.overview(engine, now, spec, settled))  # noqa: B023
                )
                ours["page"].append(page.in_process(window))
                ours["https"].append(page.over_https(window))
            baseline = statistics.median(base)
            for kind, text in (("cold", "first page of a process (queries)"),
                               ("queries", "queries"), ("page", "page, in process"),
                               ("https", "page over HTTPS")):  # fmt: skip
                value = statistics.median(ours[kind])
                goal = kind in ("page", "https")
                rows.append(
                    Row(f"{label}: overview ({window}), {text}", "ms", value, baseline,
                        f"< {GOAL_MS:g} ms" if goal else "", value < GOAL_MS if goal else None)
                )  # fmt: skip
        notes = plans(engine, now)
        drop_console_indexes(engine)
        try:
            spec = overview.WINDOWS["day"]
            cold, base = [], []
            for _ in range(max(3, repeat // 3)):
                base.append(count())
                cold.append(_ms(lambda: overview.overview(engine, now, spec, SettledCounts())))
            rows.append(
                Row(f"{label}: overview (day), first page of a process, WITHOUT the console "
                    "indexes", "ms", statistics.median(cold), statistics.median(base))
            )  # fmt: skip
            warm, settled = [], SettledCounts()
            overview.overview(engine, now, spec, settled)
            for _ in range(max(3, repeat // 3)):
                warm.append(_ms(lambda: overview.overview(engine, now, spec, settled)))
            rows.append(
                Row(f"{label}: overview (day), queries, WITHOUT the console indexes", "ms",
                    statistics.median(warm), statistics.median(base))
            )  # fmt: skip
        finally:
            create_console_indexes(engine)
    finally:
        page.close()
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="certificates in the store")
    parser.add_argument("--refusals", type=int, default=100_000, help="refusals in the store")
    parser.add_argument("--repeat", type=int, default=15, help="interleaved runs (median kept)")
    parser.add_argument("--postgres", action="store_true", help="also a throwaway PostgreSQL")
    parser.add_argument("--db", metavar="URL", help="also this empty PostgreSQL database")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows: list[Row] = []
    notes = [f"{args.rows:,} certificates and {args.refusals:,} refusals over 14 days; "
             f"load average {os.getloadavg()[0]:.2f} at start"]  # fmt: skip
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="donjon-bench-console-") as tmp_text:
        tmp = Path(tmp_text)
        targets: list[tuple[str, Callable[[], Any]]] = [
            ("sqlite", lambda: _nullcontext(f"sqlite:///{tmp / 'audit.db'}"))
        ]
        if args.postgres:
            targets.append(("postgresql", throwaway_postgres))
        if args.db:
            targets.append(("postgresql", lambda: _nullcontext(args.db)))
        for label, opener in targets:
            with opener() as url:
                store = AuditStore.open(url)
                try:
                    took = fill(store, args.rows, args.refusals, now)
                    notes.append(f"{label}: filled in {took:.1f} s")
                    found, plan = measure(store, label, args.repeat, tmp)
                    rows += found
                    notes += [f"{label} {line}" for line in plan]
                finally:
                    store.close()
    notes.append(f"load average {os.getloadavg()[0]:.2f} at the end")
    report("console: overview page vs SELECT count(*) (lower is better)", rows, args.json, notes)


@contextmanager
def _nullcontext(value: str) -> Iterator[str]:
    yield value


if __name__ == "__main__":
    main()
