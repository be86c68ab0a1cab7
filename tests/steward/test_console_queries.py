"""The console's reads of the audit store, on SQLite and PostgreSQL: counts, time buckets,
searches, refusals and the policy history. Expected values come from the rows the tests
write, never from the queries under test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from donjon.steward.console import overview, queries
from donjon.steward.console.overview import SettledCounts
from donjon.steward.console.queries import CertQuery, RefusalQuery
from donjon.steward.store import AuditStore, CertificateRecord, Rejection

NOW = datetime(2026, 3, 1, 12, 7, 30, tzinfo=UTC)


def record(
    serial: str,
    *,
    at: datetime,
    platform: str = "snp",
    workload: str | None = "aa" * 32,
    measurement: str = "11" * 48,
    package: str | None = None,
    not_after: datetime | None = None,
) -> CertificateRecord:
    claims = {
        "platform": platform,
        "measurement": measurement,
        "tcb_status": "UpToDate",
        "workload": {"wasm_sha256": workload, "package_name": "echo", "package_sha256": package},
    }
    return CertificateRecord(
        serial=serial,
        issued_at=at,
        not_before=at,
        not_after=not_after or at + timedelta(days=28),
        subject_key_sha256=serial.rjust(64, "0"),
        platform=platform,
        development=platform in ("sim", "nil"),
        workload_sha256=workload,
        claims=claims,
        verdict={"checks": []},
        evidence_sha256="ee" * 32,
        policy_digest="cd" * 32,
        certificate_der=b"\x30\x00",
    )


def refusal(
    at: datetime, reason: str, platform: str = "snp", evidence: str = "ff" * 32
) -> Rejection:
    return Rejection(at, reason, 403, platform, evidence, f"refused: {reason}")


@pytest.fixture
def store(store_url: str) -> AuditStore:
    s = AuditStore.open(store_url)
    yield s  # type: ignore[misc]
    s.close()


def test_overview_counts_per_platform_and_buckets_the_window(store: AuditStore) -> None:
    store.record_issued(
        [
            record("a1", at=NOW - timedelta(minutes=2)),  # in the last 5-minute bucket
            record("a2", at=NOW - timedelta(minutes=7)),  # the bucket before
            record("a3", at=NOW - timedelta(minutes=59), platform="sim"),  # first bucket
            record("a4", at=NOW - timedelta(hours=3), platform="sim"),  # outside the hour
        ]
    )
    store.revoke("a2", reason="superseded", at=NOW)
    for minutes, reason in ((1, "policy.workload"), (3, "policy.workload"), (20, "snp.chain")):
        store.record_rejection(refusal(NOW - timedelta(minutes=minutes), reason))
    store.record_rejection(refusal(NOW - timedelta(days=2), "csr.parse", platform="unknown"))

    hour = overview.overview(store.engine, NOW, overview.WINDOWS["hour"], SettledCounts())
    counts = {p.platform: (p.issued, p.revoked, p.refused) for p in hour.platforms}
    assert counts == {"snp": (2, 1, 3), "sim": (2, 0, 0), "unknown": (0, 0, 1)}
    assert (hour.totals.issued, hour.totals.revoked, hour.totals.refused) == (4, 1, 4)
    # 12 buckets of 5 minutes ending with the one that holds NOW (12:05-12:10).
    assert hour.bucket_starts[-1] == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert hour.since == datetime(2026, 3, 1, 11, 10, tzinfo=UTC)
    assert hour.issued_series[-1] == 1 and hour.issued_series[-2] == 1
    assert hour.issued_series[0] == 0  # 11:08:30 is before the window's first bucket
    assert sum(hour.issued_series) == 2
    # 12:06:30 and 12:04:30 fall in two buckets; 11:47:30 in a third.
    assert hour.refused_series[-2:] == [1, 1] and sum(hour.refused_series) == 3
    assert hour.top_reasons == [("policy.workload", 2), ("snp.chain", 1)]

    week = overview.overview(store.engine, NOW, overview.WINDOWS["week"], SettledCounts())
    assert sum(week.issued_series) == 4 and sum(week.refused_series) == 4
    assert week.top_reasons[0] == ("policy.workload", 2)


def test_settled_counts_are_read_once_an_hour_and_again_when_an_old_row_appears(
    store: AuditStore,
) -> None:
    settled = SettledCounts(check_every=0)
    window = overview.WINDOWS["day"]
    store.record_issued(
        [record("b1", at=NOW - timedelta(days=3)), record("b2", at=NOW - timedelta(minutes=1))]
    )

    def issued() -> dict[str, int]:
        found = overview.overview(store.engine, NOW, window, settled)
        return {p.platform: p.issued for p in found.platforms}

    assert issued() == {"snp": 2} and settled.recounts == 2  # both tables counted once
    store.record_issued([record("b3", at=NOW, platform="tdx")])  # a new row: recent
    assert issued() == {"snp": 2, "tdx": 1} and settled.recounts == 2
    # A Steward with a clock days behind writes an "old" row: the totals disagree, recount.
    store.record_issued([record("b4", at=NOW - timedelta(days=5), platform="sim")])
    assert issued() == {"sim": 1, "snp": 2, "tdx": 1} and settled.recounts == 3
    store.record_rejection(refusal(NOW - timedelta(days=9), "late.row", platform="tdx"))
    found = overview.overview(store.engine, NOW, window, settled)
    assert {p.platform: p.refused for p in found.platforms}["tdx"] == 1
    assert settled.recounts == 4
    # Hours later, the hours between are added to the settled counts, not recounted.
    later = overview.overview(store.engine, NOW + timedelta(hours=3), window, settled)
    assert later.totals.issued == 4 and settled.recounts == 4
    assert {p.platform: p.issued for p in later.platforms} == {"sim": 1, "snp": 2, "tdx": 1}
    # The chart's settled buckets are kept, and an old row in one of them is still counted.
    fresh = overview.overview(store.engine, NOW + timedelta(hours=3), window, SettledCounts())
    assert later.issued_series == fresh.issued_series and sum(fresh.issued_series) == 2
    store.record_issued([record("b5", at=NOW - timedelta(hours=2), platform="sim")])
    again = overview.overview(store.engine, NOW + timedelta(hours=3), window, settled)
    assert sum(again.issued_series) == 3 and settled.recounts == 5
    assert again.top_reasons == [] and sum(again.refused_series) == 0


def test_an_old_row_shows_once_the_totals_are_checked_again(store: AuditStore) -> None:
    clock = [0.0]
    settled = SettledCounts(check_every=300, ticker=lambda: clock[0])
    day = overview.WINDOWS["day"]
    store.record_issued([record("c1", at=NOW - timedelta(days=2))])
    assert overview.overview(store.engine, NOW, day, settled).totals.issued == 1
    store.record_issued([record("c2", at=NOW - timedelta(days=2))])  # a wrong clock's row
    store.record_issued([record("c3", at=NOW)])  # a recent row shows at once
    assert overview.overview(store.engine, NOW, day, settled).totals.issued == 2
    clock[0] = 300.0
    assert overview.overview(store.engine, NOW, day, settled).totals.issued == 3


def test_top_reasons_add_the_settled_and_the_recent_refusals(store: AuditStore) -> None:
    settled = SettledCounts()
    week = overview.WINDOWS["week"]
    for hours, reason in ((30, "snp.chain"), (3, "snp.chain"), (0.2, "policy.workload")):
        store.record_rejection(refusal(NOW - timedelta(hours=hours), reason))
    first = overview.overview(store.engine, NOW, week, settled)
    assert first.top_reasons == [("snp.chain", 2), ("policy.workload", 1)]
    store.record_rejection(refusal(NOW + timedelta(minutes=1), "policy.workload"))
    store.record_rejection(refusal(NOW + timedelta(minutes=2), "policy.workload"))
    later = overview.overview(store.engine, NOW + timedelta(hours=2), week, settled)
    assert later.top_reasons == [("policy.workload", 3), ("snp.chain", 2)]
    assert settled.recounts == 2  # both tables once, at the first page


def test_certificates_are_found_by_each_digest_serial_status_and_date(store: AuditStore) -> None:
    package = "bb" * 32
    store.record_issued(
        [
            record("10ab", at=NOW - timedelta(days=1), workload="01" * 32, package=package),
            record("20cd", at=NOW - timedelta(days=2), measurement="22" * 48, platform="tdx"),
            record("30ef", at=NOW - timedelta(days=40), not_after=NOW - timedelta(days=12)),
        ]
    )
    store.revoke("20cd", reason="key-compromise", at=NOW)

    def serials(**kwargs: object) -> list[str]:
        page = queries.search_certificates(store.engine, CertQuery(**kwargs), NOW)  # type: ignore[arg-type]
        return [r.serial for r in page.rows]

    assert serials() == ["10ab", "20cd", "30ef"]  # newest first
    assert serials(text="workload:" + "01" * 32) == ["10ab"]
    assert serials(text="sha256:" + package) == ["10ab"]  # the package digest, unqualified
    assert serials(text="measurement:" + "22" * 48) == ["20cd"]
    assert serials(text="20") == ["20cd"]  # a serial's start
    assert serials(text="evidence:" + "ee" * 32) == ["10ab", "20cd", "30ef"]
    assert serials(platform="tdx") == ["20cd"]
    assert serials(status="revoked") == ["20cd"]
    assert serials(status="expired") == ["30ef"]
    assert serials(status="active") == ["10ab"]
    day = (NOW - timedelta(days=2)).date()
    assert serials(since=day, until=day) == ["20cd"]
    row = queries.search_certificates(store.engine, CertQuery(text="10ab"), NOW).rows[0]
    assert (row.package_name, row.tcb_status, row.status(NOW)) == ("echo", "UpToDate", "active")


@pytest.mark.parametrize(
    "text", ["<script>", "workload:xyz", "nosuchfield:00", "0" * 129, "%", "_"]
)
def test_a_search_the_console_cannot_run_says_what_it_takes(text: str) -> None:
    with pytest.raises(queries.SearchError):
        queries.parse_search(text)


def test_like_wildcards_match_nothing_special(store: AuditStore) -> None:
    store.record_issued([record("abc", at=NOW)])
    with pytest.raises(queries.SearchError):
        queries.search_certificates(store.engine, CertQuery(text="a%"), NOW)


def test_certificates_page_by_fifty(store: AuditStore) -> None:
    store.record_issued(
        [record(format(i + 1, "x"), at=NOW - timedelta(minutes=i)) for i in range(51)]
    )
    first = queries.search_certificates(store.engine, CertQuery(), NOW)
    second = queries.search_certificates(store.engine, CertQuery(page=1), NOW)
    assert (len(first.rows), first.has_next) == (50, True)
    assert [r.serial for r in second.rows] == ["33"] and not second.has_next  # 51 = 0x33


def test_refusals_filter_by_platform_reason_evidence_and_date(store: AuditStore) -> None:
    store.record_rejection(refusal(NOW - timedelta(days=3), "snp.chain", evidence="ab" * 32))
    store.record_rejection(refusal(NOW - timedelta(days=1), "policy.workload", platform="sim"))
    store.record_rejection(refusal(NOW, "policy.tcb_status"))

    def reasons(**kwargs: object) -> list[str]:
        return [
            r.reason for r in queries.search_refusals(store.engine, RefusalQuery(**kwargs)).rows
        ]  # type: ignore[arg-type]

    assert reasons() == ["policy.tcb_status", "policy.workload", "snp.chain"]
    assert reasons(platform="sim") == ["policy.workload"]
    assert reasons(reason="policy.") == ["policy.tcb_status", "policy.workload"]
    assert reasons(evidence="abab") == ["snp.chain"]
    assert reasons(since=date(2026, 2, 28)) == ["policy.tcb_status", "policy.workload"]
    assert reasons(until=date(2026, 2, 26)) == ["snp.chain"]


def test_the_policy_history_keeps_each_change_once_and_finds_the_previous(
    store: AuditStore,
) -> None:
    engine = store.engine
    assert queries.policy_history(engine, "a" * 64) == (None, None)
    assert queries.record_policy(engine, digest="a" * 64, source="p.toml", text="[snp]\n", now=NOW)
    assert not queries.record_policy(engine, digest="a" * 64, source="p.toml", text="x", now=NOW)
    current, previous = queries.policy_history(engine, "a" * 64)
    assert current is not None and current.text == "[snp]\n" and previous is None
    later = NOW + timedelta(hours=1)
    queries.record_policy(engine, digest="b" * 64, source="p.toml", text="[tdx]\n", now=later)
    current, previous = queries.policy_history(engine, "b" * 64)
    assert current is not None and previous is not None
    assert (current.text, previous.text, previous.digest) == ("[tdx]\n", "[snp]\n", "a" * 64)
    # Back to the first policy: its newest row is the current one, the second is previous.
    queries.record_policy(engine, digest="a" * 64, source="p.toml", text="[snp]\n", now=later)
    current, previous = queries.policy_history(engine, "a" * 64)
    assert current is not None and previous is not None and previous.digest == "b" * 64
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM policy_texts")).scalar()
    assert rows == 3


def test_the_console_indexes_exist(store: AuditStore) -> None:
    inspector = sa.inspect(store.engine)
    certs = {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes("certificates")}
    refused = {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes("rejections")}
    assert certs["ix_certificates_issued_at"] == ("issued_at", "platform")
    assert certs["ix_certificates_revoked_platform"] == ("revoked_at", "platform")
    assert certs["ix_certificates_workload"] == ("workload_sha256",)
    assert refused["ix_rejections_at"] == ("at", "platform")
    assert refused["ix_rejections_reason_at"] == ("reason", "at")
