"""Queries on the api_keys view (always the live generation)."""

from __future__ import annotations

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
