"""Queries on the users view (always the live generation)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.users.tables import define_users

users = define_users(sa.MetaData(), 0).to_metadata(sa.MetaData(), name="users")


def user_by_id(conn: Connection, user_id: UUID) -> dict[str, Any] | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).mappings().first()
    return None if row is None else dict(row)


def user_by_username(conn: Connection, username: str) -> dict[str, Any] | None:
    row = (
        conn.execute(sa.select(users).where(users.c.username_folded == username.casefold()))
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def count_users(conn: Connection, *, include_deleted: bool = False) -> int:
    query = sa.select(sa.func.count()).select_from(users)
    if not include_deleted:
        query = query.where(users.c.deleted_at.is_(None))
    return int(conn.execute(query).scalar_one())
