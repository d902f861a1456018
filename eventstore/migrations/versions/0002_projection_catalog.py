"""Projection catalog: which generation of each read model is live, and how far each got.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projection_generations",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("live", sa.Integer(), nullable=False),
        sa.Column("live_shape", sa.Integer(), nullable=False),
        sa.Column("building", sa.Integer(), nullable=True),
        sa.Column("building_shape", sa.Integer(), nullable=True),
    )
    op.create_table(
        "projection_tracking",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("generation", sa.Integer(), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
