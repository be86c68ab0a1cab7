"""The web console: indexes for its overview and searches, and the policy texts it diffs.

Revision ID: 0005_console
Revises: 0004_secrets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_console"
down_revision = "0004_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_certificates_issued_at", "certificates", ["issued_at", "platform"])
    op.create_index(
        "ix_certificates_revoked_platform", "certificates", ["revoked_at", "platform"]
    )
    op.create_index("ix_certificates_workload", "certificates", ["workload_sha256"])
    op.create_index("ix_rejections_at", "rejections", ["at", "platform"])
    op.create_index("ix_rejections_reason_at", "rejections", ["reason", "at"])
    op.create_table(
        "policy_texts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("the audit store is never downgraded: restore a backup instead")
