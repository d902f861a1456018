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


def usage_stats(conn: Connection, now: datetime, owner_id: UUID | None = None) -> dict[str, int]:
    """Counts over every key (the contract's ``/api-keys/usage-stats``), or one owner's keys."""
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
        ).where(*([] if owner_id is None else [api_keys.c.user_id == owner_id]))
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


KEY_SORTS = {"created_at": api_keys.c.created_at, "name": api_keys.c.name}


def list_api_keys(
    conn: Connection,
    owner_id: UUID,
    *,
    now: datetime,
    include_revoked: bool = False,
    include_expired: bool = False,
    sort_by: str = "created_at",
    descending: bool = False,
    page: int = 1,
    per_page: int = 20,
    after: tuple[Any, UUID] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of an owner's keys and the total matching; ``after`` is a keyset cursor."""
    conditions: list[sa.ColumnElement[bool]] = [api_keys.c.user_id == owner_id]
    if not include_revoked:
        conditions.append(api_keys.c.revoked_at.is_(None))
    if not include_expired:
        conditions.append(sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now))
    total = int(
        conn.execute(sa.select(sa.func.count()).select_from(api_keys).where(*conditions)).scalar_one()
    )
    key = KEY_SORTS[sort_by]
    order = (key.desc(), api_keys.c.id.desc()) if descending else (key.asc(), api_keys.c.id.asc())
    query = sa.select(api_keys, key.label("sort_key")).where(*conditions).order_by(*order).limit(per_page)
    if after is not None:
        position = sa.tuple_(key, api_keys.c.id)
        query = query.where(position < after if descending else position > after)
    else:
        query = query.offset((page - 1) * per_page)
    return [dict(row) for row in conn.execute(query).mappings()], total


def every_api_key(
    conn: Connection, *, include_revoked: bool = False, limit: int = 1000
) -> list[dict[str, Any]]:
    """Every owner's keys, oldest first (the operator's ``keys list``): unrevoked ones unless
    ``include_revoked``; expired ones too (``is_active`` tells)."""
    query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id).limit(limit)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return [dict(row) for row in conn.execute(query).mappings()]
