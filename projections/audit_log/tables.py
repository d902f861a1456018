"""The audit_log read model: one row per user or key event, indexed for the auditor's queries
with keyset pagination on position."""

from __future__ import annotations

import sqlalchemy as sa

from projections.base import table_name
from projections.types import UtcDateTime


def define_audit_log(metadata: sa.MetaData, generation: int) -> sa.Table:
    name = table_name("audit_log", generation)
    return sa.Table(
        name,
        metadata,
        sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("resource_version", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("credential_id", sa.Uuid(), nullable=True),
        sa.Column("ip_address", sa.Text(), nullable=True),  # sealed personal data
        sa.Column("user_agent", sa.Text(), nullable=True),  # sealed personal data
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("causation_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),  # secrets redacted, personal data sealed
        sa.Column("mac", sa.String(64), nullable=False),  # AuditLogProjection.vouched
        sa.Index(f"{name}_actor", "actor_id", "position"),
        sa.Index(f"{name}_resource", "resource_type", "resource_id", "position"),
        sa.Index(f"{name}_action", "action", "position"),
        sa.Index(f"{name}_status", "status", "position"),
        sa.Index(f"{name}_time", "occurred_at", "position"),
        sa.Index(f"{name}_action_time", "action", "occurred_at"),  # "every failed login yesterday"
    )


def define_audit_counts(metadata: sa.MetaData, generation: int) -> sa.Table:
    """How many entries each filter value selects, and the positions they span: a list with one
    filter (or none) counts its matches in one lookup instead of a scan of millions."""
    return sa.Table(
        table_name("audit_log_counts", generation),
        metadata,
        sa.Column("dimension", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(100), primary_key=True),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("first_position", sa.BigInteger(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
    )
