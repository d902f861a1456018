"""Data keys for crypto-shredding; stored events and snapshots made append-only.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from eventstore.migrations.append_only import make_append_only

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SQLITE_TABLES = ("stored_events", "stored_snapshots")
POSTGRES_TABLES = ("identity_events", "identity_snapshots")


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("subject_id", sa.Uuid(), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    make_append_only(SQLITE_TABLES if sqlite else POSTGRES_TABLES)
