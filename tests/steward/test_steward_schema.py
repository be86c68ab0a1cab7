"""Alembic migrations of the audit store, on SQLite and PostgreSQL.

The migrations must produce exactly the tables and indexes the code reads
(what a new database gets), a store made before Alembic is upgraded in place
with its rows, and a Steward refuses a schema it does not know.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from donjon.cli.main import main
from donjon.steward import schema
from donjon.steward.errors import StoreConfigError
from donjon.steward.store import AuditStore, normalize_url

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _shape(engine: sa.Engine) -> dict[str, Any]:
    """Tables, columns (type, nullability), primary keys and indexes, comparable across stores."""
    inspector = sa.inspect(engine)
    shape: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        columns = {
            c["name"]: (type(c["type"]).__name__, bool(c["nullable"]))
            for c in inspector.get_columns(table)
        }
        indexes = sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes(table)
        )
        primary = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
        shape[table] = {"columns": columns, "indexes": indexes, "primary": primary}
    return shape


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url))


def _second_url(url: str, tmp_path: Path) -> str:
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'second.db'}"
    import psycopg

    name = url.rsplit("/", 1)[1] + "_b"
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


def _at_baseline(url: str) -> sa.Engine:
    """A store migrated only to 0001 (the schema before Alembic), with one certificate row."""
    engine = _engine(url)
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "0001_baseline")
        conn.execute(
            sa.text(
                "INSERT INTO certificates (serial, issued_at, not_before, not_after, "
                "subject_key_sha256, platform, development, claims, verdict, evidence_sha256, "
                "policy_digest, certificate_der) VALUES ('abc', :t, :t, :t, :k, 'nil', true, "
                "'{}', '{}', :k, :k, :der)"
            ),
            {"t": NOW.replace(tzinfo=None), "k": "aa" * 32, "der": b"\x30\x00"},
        )
    return engine


def test_the_migrations_build_what_a_new_store_gets(store_url: str, tmp_path: Path) -> None:
    migrated = _at_baseline(store_url)
    before, after = schema.upgrade(migrated)  # runs 0002 onwards themselves
    assert (before.current, after.current) == ("0001_baseline", schema.head())
    fresh_url = _second_url(store_url, tmp_path)
    AuditStore.open(fresh_url).close()  # create_all + stamp head
    fresh = _engine(fresh_url)
    assert _shape(migrated) == _shape(fresh)
    assert set(_shape(fresh)) == {
        "certificates",
        "policy_texts",
        "rejections",
        "steward_meta",
        "used_nonces",
        "secret_versions",
        "secret_releases",
    }
    assert ("ix_certificates_revoked_at", ("revoked_at",), False) in (
        _shape(fresh)["certificates"]["indexes"]
    )
    migrated.dispose()
    fresh.dispose()


def test_a_store_from_before_alembic_is_refused_then_upgraded_with_its_rows(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = _at_baseline(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))  # as the old code left it
    engine.dispose()
    with pytest.raises(StoreConfigError, match=r"older schema \(from before Alembic\)") as info:
        AuditStore.open(store_url)
    assert "donjon steward db upgrade" in (info.value.hint or "")
    code, out, err = _run(["steward", "db", "current", "--db", store_url, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["status"], doc["current"], doc["pre_alembic"]) == ("behind", "0001_baseline", True)
    code, out, err = _run(["steward", "db", "upgrade", "--db", store_url, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["after"] == {
        "current": schema.head(),
        "head": schema.head(),
        "status": "up-to-date",
        "pre_alembic": False,
    }
    store = AuditStore.open(store_url)
    try:
        assert store.get("abc").subject_key_sha256 == "aa" * 32  # the row survived
    finally:
        store.close()
    code, out, _ = _run(["steward", "db", "upgrade", "--db", store_url], capsys)
    assert code == 0 and out.startswith("audit store already at")


def test_an_unknown_schema_is_one_line_and_the_steward_does_not_start(
    store_url: str, tmp_path: Path
) -> None:
    AuditStore.open(store_url).close()
    engine = _engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    with pytest.raises(StoreConfigError, match="0099_from_the_future, which this Steward does not"):
        AuditStore.open(store_url)
    with pytest.raises(StoreConfigError, match="does not know"):
        schema.upgrade(_engine(store_url))  # never "upgrade" what a newer Donjon wrote
    policy = tmp_path / "p.toml"
    policy.write_text("[nil]\nallow = true\n")
    done = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dir", str(tmp_path),
         "--init", "--dev", "--policy", str(policy), "--db", store_url, "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith("donjon: error: the audit store ") and "0099" in lines[-1]


@pytest.mark.postgres
def test_replicas_upgrading_together_migrate_once(postgres_url: str) -> None:
    import psycopg

    name = "race_" + datetime.now(UTC).strftime("%H%M%S%f")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + "/" + name
    _at_baseline(url).dispose()

    def replica(_: int) -> tuple[str | None, str | None]:
        engine = _engine(url)
        try:
            before, after = schema.upgrade(engine)
        finally:
            engine.dispose()
        return before.current, after.current

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(replica, range(4)))
    assert all(after == schema.head() for _, after in results)
    # Exactly one of them found the old revision; the others waited and found the head.
    assert sorted(before or "" for before, _ in results) == sorted(
        ["0001_baseline"] + [schema.head()] * 3
    )
