"""Queries on the api_keys view (always the live generation)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.api_keys.tables import define_api_keys

api_keys = define_api_keys(sa.MetaData(), 0).to_metadata(sa.MetaData(), name="api_keys")


def api_key_by_id(conn: Connection, key_id: UUID) -> dict[str, Any] | None:
    row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    return None if row is None else dict(row)


def api_keys_of(conn: Connection, user_id: UUID) -> list[dict[str, Any]]:
    query = (
        sa.select(api_keys)
        .where(api_keys.c.user_id == user_id)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def usage_stats(conn: Connection, now: datetime) -> dict[str, int]:
    """Counts over every key (the contract's ``/api-keys/usage-stats``)."""
    revoked = api_keys.c.revoked_at.is_not(None)
    expired = sa.and_(api_keys.c.revoked_at.is_(None), api_keys.c.expires_at <= now)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(revoked),
            sa.func.count().filter(expired),
            sa.func.count().filter(api_keys.c.last_used_at >= midnight),
            sa.func.coalesce(sa.func.sum(api_keys.c.usage_count), 0),
        )
    ).one()
    total, revoked_keys, expired_keys, used_today, requests = (int(value) for value in row)
    return {
        "total_keys": total,
        "active_keys": total - revoked_keys - expired_keys,
        "expired_keys": expired_keys,
        "revoked_keys": revoked_keys,
        "keys_used_today": used_today,
        "total_requests": requests,
    }
