"""Queries on the users view (always the live generation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
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


SORTS = {
    "username": users.c.username_folded,
    "email": users.c.email,
    "created_at": users.c.created_at,
    "last_login_at": sa.func.coalesce(users.c.last_login_at, sa.literal(datetime(1970, 1, 1, tzinfo=UTC))),
}


@dataclass(frozen=True)
class UserFilters:
    search: str | None = None
    is_active: bool | None = None
    is_verified: bool | None = None
    is_superuser: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    include_deleted: bool = False


def list_users(
    conn: Connection,
    filters: UserFilters,
    *,
    sort_by: str = "created_at",
    descending: bool = False,
    page: int = 1,
    per_page: int = 20,
    after: tuple[Any, UUID] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of users and the total matching; ``after`` (sort value, id) is a keyset cursor."""
    conditions: list[sa.ColumnElement[bool]] = []
    if not filters.include_deleted:
        conditions.append(users.c.deleted_at.is_(None))
    for name in ("is_active", "is_verified", "is_superuser"):
        if getattr(filters, name) is not None:
            conditions.append(users.c[name] == getattr(filters, name))
    if filters.created_after is not None:
        conditions.append(users.c.created_at >= filters.created_after)
    if filters.created_before is not None:
        conditions.append(users.c.created_at < filters.created_before)
    if filters.search:
        pattern = (
            "%"
            + filters.search.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            + "%"
        )
        conditions.append(
            sa.or_(
                users.c.username_folded.like(pattern, escape="\\"),
                users.c.email.like(pattern, escape="\\"),
                users.c.full_name_folded.like(pattern, escape="\\"),
            )
        )
    total = int(conn.execute(sa.select(sa.func.count()).select_from(users).where(*conditions)).scalar_one())
    key = SORTS[sort_by]
    order = (key.desc(), users.c.id.desc()) if descending else (key.asc(), users.c.id.asc())
    query = sa.select(users, key.label("sort_key")).where(*conditions).order_by(*order).limit(per_page)
    if after is not None:
        beyond = sa.tuple_(key, users.c.id) < after if descending else sa.tuple_(key, users.c.id) > after
        query = query.where(beyond)
    else:
        query = query.offset((page - 1) * per_page)
    return [dict(row) for row in conn.execute(query).mappings()], total
