"""Alembic's environment: run migrations on the connection that ``donjon.steward.schema`` opened.

Donjon never runs Alembic's own CLI against a URL from ``alembic.ini``: the
Steward passes its connection (after taking the migration lock) in
``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from donjon.steward.store import schema_metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through `donjon steward db upgrade`, not alembic's CLI")
context.configure(
    connection=connection,
    target_metadata=schema_metadata(),
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
