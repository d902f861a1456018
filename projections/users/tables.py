"""The users read model: every field of the contract's user, indexed for its filters and sorts."""

from __future__ import annotations

import sqlalchemy as sa

from projections.base import table_name
from projections.types import UtcDateTime


def define_users(metadata: sa.MetaData, generation: int) -> sa.Table:
    name = table_name("users", generation)
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("username_folded", sa.String(100), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("full_name", sa.String(255), nullable=True),
        sa.Column("full_name_folded", sa.String(255), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_superuser", sa.Boolean(), nullable=False),
        sa.Column("is_verified", sa.Boolean(), nullable=False),
        sa.Column("verified_at", UtcDateTime(), nullable=True),
        sa.Column("failed_login_count", sa.Integer(), nullable=False),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("last_login_at", UtcDateTime(), nullable=True),
        sa.Column("last_login_ip", sa.Text(), nullable=True),  # sealed personal data
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.Column("erased_at", UtcDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Index(f"{name}_username", "username_folded", unique=True),
        sa.Index(f"{name}_email", "email", "id"),
        sa.Index(f"{name}_full_name", "full_name_folded", "id"),
        sa.Index(f"{name}_created", "created_at", "id"),
        sa.Index(f"{name}_last_login", "last_login_at", "id"),
        sa.Index(f"{name}_flags", "deleted_at", "is_active", "is_verified", "is_superuser"),
    )
