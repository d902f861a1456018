"""The api_keys read model: every field of the contract's key except the secret and digest."""

from __future__ import annotations

import sqlalchemy as sa

from projections.base import table_name
from projections.types import UtcDateTime


def define_api_keys(metadata: sa.MetaData, generation: int) -> sa.Table:
    name = table_name("api_keys", generation)
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("key_prefix", sa.String(12), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_ip", sa.Text(), nullable=True),  # sealed personal data
        sa.Column("usage_count", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("rotated_at", UtcDateTime(), nullable=True),
        sa.Column("grace_until", UtcDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Index(f"{name}_owner", "user_id", "created_at", "id"),
        sa.Index(f"{name}_prefix", "key_prefix"),
        sa.Index(f"{name}_state", "revoked_at", "expires_at"),
    )
