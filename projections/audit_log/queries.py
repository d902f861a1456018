"""Queries on the audit_log view (always the live generation), keyset-paginated on position."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.audit_log.tables import define_audit_log

audit_log = define_audit_log(sa.MetaData(), 0).to_metadata(sa.MetaData(), name="audit_log")


def entries(
    conn: Connection,
    *,
    resource_id: UUID | None = None,
    actor_id: UUID | None = None,
    after_position: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    query = sa.select(audit_log).where(audit_log.c.position > after_position)
    if resource_id is not None:
        query = query.where(audit_log.c.resource_id == resource_id)
    if actor_id is not None:
        query = query.where(audit_log.c.actor_id == actor_id)
    return [dict(row) for row in conn.execute(query.order_by(audit_log.c.position).limit(limit)).mappings()]


def all_positions(conn: Connection) -> list[int]:
    return list(conn.execute(sa.select(audit_log.c.position).order_by(audit_log.c.position)).scalars())
