"""Streaming events out: each sink's cursor (a webhook subscription's, or the NATS sink's), the
position through which it has delivered every matching audit entry, and what it last met.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_cursors",
        sa.Column("name", sa.String(64), primary_key=True),  # "subscription:<uuid hex>" or "nats"
        sa.Column("delivered_through", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
