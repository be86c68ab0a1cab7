"""An index on revocation time: the CRL's change check and its list read only revoked rows.

Revision ID: 0003_revoked_index
Revises: 0002_challenges
"""

from __future__ import annotations

from alembic import op

revision = "0003_revoked_index"
down_revision = "0002_challenges"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_certificates_revoked_at", "certificates", ["revoked_at"])


def downgrade() -> None:
    raise NotImplementedError("the audit store is never downgraded: restore a backup instead")
