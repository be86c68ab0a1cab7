"""Challenges and revoked keys: used nonces (each accepted once), certificates by key.

Revision ID: 0002_challenges
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_challenges"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_nonces",
        sa.Column("nonce_sha256", sa.String(64), primary_key=True),
        sa.Column("used_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_used_nonces_expires_at", "used_nonces", ["expires_at"])
    op.create_index("ix_certificates_subject_key", "certificates", ["subject_key_sha256"])


def downgrade() -> None:
    raise NotImplementedError("the audit store is never downgraded: restore a backup instead")
