"""The revoked-key check seeks (key, revoked_at) instead of reading every certificate of a key.

Issuance asks twice per certificate whether its key has a revoked certificate
(before signing, and again after the commit). With an index on the key alone,
that read every certificate of the key, so a key with many certificates (a
Keep renewing, or an Enarx CSR posted again and again) made every issuance
slower. The index on (key, revoked_at) answers from its first entry; it also
serves every lookup by key alone, so it replaces the old one.

Revision ID: 0006_key_revoked_index
Revises: 0005_console
"""

from __future__ import annotations

from alembic import op

revision = "0006_key_revoked_index"
down_revision = "0005_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_certificates_subject_key_revoked",
        "certificates",
        ["subject_key_sha256", "revoked_at"],
    )
    op.drop_index("ix_certificates_subject_key", table_name="certificates")


def downgrade() -> None:
    raise NotImplementedError("the audit store is never downgraded: restore a backup instead")
