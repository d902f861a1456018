"""The audit chain: seals and signed checkpoints, append-only like the events they cover.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from eventstore.migrations.append_only import make_append_only

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("audit_seals", "audit_checkpoints")


def upgrade() -> None:
    op.create_table(
        "audit_seals",
        sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("record_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("seal", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("head_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
    )
    make_append_only(TABLES)
