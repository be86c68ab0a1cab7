"""Secrets released to attested Keeps: sealed versions, and every release and refusal.

Revision ID: 0004_secrets
Revises: 0003_revoked_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_secrets"
down_revision = "0003_revoked_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "secret_versions" not in existing:  # a development build made it at start-up
        op.create_table(
            "secret_versions",
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("size", sa.Integer(), nullable=False),
            sa.Column("kek_id", sa.String(16), nullable=False),
            sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
            sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
            sa.Column("policy", sa.Text(), nullable=False),
            sa.Column("withdrawn_at", sa.DateTime(), nullable=True),
        )
    if "secret_releases" not in existing:
        op.create_table(
            "secret_releases",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("at", sa.DateTime(), nullable=False),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("version", sa.Integer(), nullable=True),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("check", sa.String(64), nullable=False),
            sa.Column("status", sa.Integer(), nullable=False),
            sa.Column("serial", sa.String(64), nullable=True),
            sa.Column("subject_key_sha256", sa.String(64), nullable=True),
            sa.Column("platform", sa.String(16), nullable=True),
            sa.Column("workload_sha256", sa.String(64), nullable=True),
            sa.Column("package_sha256", sa.String(64), nullable=True),
            sa.Column("detail", sa.Text(), nullable=False),
        )
        op.create_index("ix_secret_releases_at", "secret_releases", ["at"])
        op.create_index("ix_secret_releases_name", "secret_releases", ["name"])


def downgrade() -> None:
    raise NotImplementedError("the audit store is never downgraded: restore a backup instead")
