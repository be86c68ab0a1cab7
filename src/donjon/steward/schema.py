"""The audit store's schema revision: Alembic migrates it, the Steward checks it at start.

* ``upgrade`` (``donjon steward db upgrade``) brings any store to the head
  revision, holding a PostgreSQL advisory lock so that replicas starting
  together migrate once. A store made before Alembic (no ``alembic_version``)
  is first stamped with the revision its tables show.
* ``ensure`` runs when a Steward opens its store: an empty database gets
  the head's tables (and the head's stamp); the head is accepted; anything else is one error
  (an older schema: run ``db upgrade``; an unknown one: a newer Donjon wrote
  it, and this Steward must not touch it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from donjon.steward.errors import StoreConfigError
from donjon.steward.store import schema_metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x646F6E6A6F6E  # "donjon": the advisory lock that serializes migrations
_BASELINE = "0001_baseline"
_CHALLENGES = "0002_challenges"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    found = _scripts().get_current_head()
    assert found is not None, "no migration in donjon/steward/migrations/versions"
    return found


def known_revisions() -> list[str]:
    """Every revision this Donjon knows, oldest first."""
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # alembic_version, or the revision a pre-Alembic store's tables show
    head: str
    pre_alembic: bool  # tables without an alembic_version row
    empty: bool  # no Donjon table at all

    @property
    def status(self) -> str:
        if self.empty:
            return "empty"
        if self.current == self.head and not self.pre_alembic:
            return "up-to-date"
        if self.current in known_revisions():
            return "behind"
        return "unknown"

    def to_json(self) -> dict[str, object]:
        return {
            "current": self.current,
            "head": self.head,
            "status": self.status,
            "pre_alembic": self.pre_alembic,
        }


def _state(conn: Connection) -> SchemaState:
    tables = set(sa.inspect(conn).get_table_names())
    current = MigrationContext.configure(conn).get_current_revision()
    if current is not None:
        return SchemaState(current=current, head=head(), pre_alembic=False, empty=False)
    if "certificates" not in tables:
        return SchemaState(current=None, head=head(), pre_alembic=False, empty=True)
    shown = _CHALLENGES if "used_nonces" in tables else _BASELINE
    return SchemaState(current=shown, head=head(), pre_alembic=True, empty=False)


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def state(engine: Engine) -> SchemaState:
    try:
        with engine.connect() as conn:
            return _state(conn)
    except SQLAlchemyError as exc:
        raise StoreConfigError(
            f"cannot read the audit store {_where(engine)}: {_short(exc)}"
        ) from None


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def upgrade(engine: Engine) -> tuple[SchemaState, SchemaState]:
    """Migrate to the head under the migration lock; the states before and after."""
    try:
        with engine.begin() as conn:
            _lock(conn)
            before = _state(conn)  # read under the lock: another replica may have migrated
            if before.status == "unknown":
                raise StoreConfigError(_unknown(before, engine))
            if before.empty:
                # Alembic's advice for a new database: create the tables, stamp the head.
                # (tests/steward/test_steward_schema.py checks that the migrations agree.)
                schema_metadata().create_all(conn)
                command.stamp(_config(conn), "head")
            elif before.status != "up-to-date":
                config = _config(conn)
                if before.pre_alembic:
                    assert before.current is not None
                    command.stamp(config, before.current)
                command.upgrade(config, "head")
            after = _state(conn)
    except SQLAlchemyError as exc:
        raise StoreConfigError(
            f"cannot migrate the audit store {_where(engine)}: {_short(exc)}"
        ) from None
    return before, after


def ensure(engine: Engine) -> None:
    """At start: create an empty store, accept the head, refuse anything else (one line)."""
    found = state(engine)
    if found.status == "up-to-date":
        return
    if found.status == "empty":
        upgrade(engine)
        return
    if found.status == "behind":
        kind = "from before Alembic" if found.pre_alembic else f"at revision {found.current}"
        raise StoreConfigError(
            f"the audit store {_where(engine)} has an older schema ({kind}); "
            f"this Steward needs {found.head}",
            hint=f"run `donjon steward db upgrade --db {_where(engine)}` once, then start it",
        )
    raise StoreConfigError(_unknown(found, engine))


def _unknown(found: SchemaState, engine: Engine) -> str:
    return (
        f"the audit store {_where(engine)} has schema revision {found.current}, which this "
        f"Steward does not know (it knows up to {found.head}): a newer Donjon migrated it"
    )


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__
