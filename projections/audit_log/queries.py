"""Queries on the audit_log view (always the live generation): one filter, one query builder.

Every list (the API's routes, the export, entity history) goes through ``AuditFilter`` and
``select_entries``, keyset-paginated on position (no OFFSET over entries). Each filter column
leads one of the table's indexes, followed by position, so a filtered page is an index scan in
position order (docs/decisions/0008-audit-log-queries.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from eventstore.audit_chain.tree import tree_nodes
from projections.audit_log.counts import USAGE_ACTION, counted
from projections.audit_log.projection import RESOURCE_TYPES
from projections.audit_log.tables import define_audit_log

audit_log = define_audit_log(sa.MetaData(), 0).to_metadata(sa.MetaData(), name="audit_log")
Order = Literal["asc", "desc"]
MAX_POSITION = 2**63 - 1  # BIGINT


@dataclass(frozen=True)
class AuditFilter:
    """Which entries: every field that is set must match (``from_`` inclusive, ``to`` exclusive;
    positions exclusive on both sides). ``without_usage``: leave out ``api_key.usage_recorded``
    entries, unless ``action`` asks for an action (the default of the audit list and export)."""

    actor_id: UUID | None = None
    resource_type: str | None = None
    resource_id: UUID | None = None
    action: str | None = None
    status: str | None = None
    from_: datetime | None = None
    to: datetime | None = None
    after_position: int | None = None
    before_position: int | None = None
    without_usage: bool = False

    @property
    def hides_usage(self) -> bool:
        return self.without_usage and self.action is None

    def after(self, position: int, order: Order) -> AuditFilter:
        """This filter, continued past ``position`` in ``order`` (a keyset page boundary)."""
        if order == "desc":
            bound = position if self.before_position is None else min(position, self.before_position)
            return replace(self, before_position=bound)
        bound = position if self.after_position is None else max(position, self.after_position)
        return replace(self, after_position=bound)

    def within(self, first: int, last: int) -> AuditFilter:
        """This filter, limited to ``first``..``last`` (inclusive)."""
        return self.after(last + 1, "desc").after(first - 1, "asc")


def conditions(audit: AuditFilter) -> list[sa.ColumnElement[bool]]:
    """The one translation of a filter into SQL."""
    c = audit_log.c
    found: list[sa.ColumnElement[bool]] = []
    if audit.actor_id is not None:
        found.append(c.actor_id == audit.actor_id)
    if audit.resource_id is not None and audit.resource_type is None:
        # The index leads with resource_type; naming every type lets it serve an id alone.
        found.append(c.resource_type.in_(sorted(set(RESOURCE_TYPES.values()))))
    if audit.resource_type is not None:
        found.append(c.resource_type == audit.resource_type)
    if audit.resource_id is not None:
        found.append(c.resource_id == audit.resource_id)
    if audit.action is not None:
        found.append(c.action == audit.action)
    if audit.hides_usage:
        found.append(c.action != USAGE_ACTION)
    if audit.status is not None:
        found.append(c.status == audit.status)
    if audit.from_ is not None:
        found.append(c.occurred_at >= audit.from_)
    if audit.to is not None:
        found.append(c.occurred_at < audit.to)
    if audit.after_position is not None:
        found.append(c.position > audit.after_position)
    if audit.before_position is not None:
        found.append(c.position < audit.before_position)
    return found


def select_entries(audit: AuditFilter, *, order: Order = "desc", limit: int | None = None) -> sa.Select[Any]:
    """Entries matching ``audit`` in position order, each with its leaf in the log's Merkle tree
    (``leaf_hash``: bytes; None only if the tree lacks it, which ``audit verify`` reports)."""
    position, leaf = audit_log.c.position, tree_nodes.c.idx + 1
    joined = [tree_nodes.c.level == 0, leaf == position]  # and the page's bounds, for the join's start
    if audit.after_position is not None:
        joined.append(tree_nodes.c.idx >= audit.after_position)
    if audit.before_position is not None:
        joined.append(tree_nodes.c.idx < audit.before_position - 1)
    query = (
        sa.select(audit_log, tree_nodes.c.hash.label("leaf_hash"))
        .select_from(audit_log.outerjoin(tree_nodes, sa.and_(*joined)))
        .where(*conditions(audit))
        .order_by(position.desc() if order == "desc" else position.asc())
    )
    return query if limit is None else query.limit(limit)


def list_entries(
    conn: Connection, audit: AuditFilter, *, order: Order = "desc", limit: int = 20, skip: int = 0
) -> list[dict[str, Any]]:
    """``limit`` entries, after the first ``skip`` (found by a scan of positions alone; keep it
    small, continue with ``AuditFilter.after`` instead)."""
    if skip:
        position = audit_log.c.position
        first = conn.execute(
            sa.select(position)
            .where(*conditions(audit))
            .order_by(position.desc() if order == "desc" else position.asc())
            .offset(skip)
            .limit(1)
        ).scalar()
        if first is None:
            return []
        audit = audit.after(first + 1 if order == "desc" else first - 1, order)
    return [dict(row) for row in conn.execute(select_entries(audit, order=order, limit=limit)).mappings()]


def count_entries(conn: Connection, audit: AuditFilter) -> int:
    return _span(conn, audit)[0]


def list_page(
    conn: Connection,
    audit: AuditFilter,
    *,
    order: Order = "desc",
    limit: int = 20,
    skip: int = 0,
    cursor: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of entries and how many match in all; ``cursor`` is the last position of the
    previous page (keyset), ``skip`` a small number of entries to pass over instead."""
    total, span = _span(conn, audit)
    if span is None:
        return [], total
    page = span if cursor is None else span.after(cursor, order)
    return list_entries(conn, page, order=order, limit=limit, skip=skip), total


def _span(conn: Connection, audit: AuditFilter) -> tuple[int, AuditFilter | None]:
    """How many entries match, and the filter limited to the positions they span (None when
    nothing matches): from the per-value counts when one field (or none) filters, else in one
    index scan. Pages read within that span: left alone, the planner walks the whole table
    backwards in search of a time window that lies far in the past."""
    found = counted(conn, audit)
    if found is None:
        position = audit_log.c.position
        scanned = conn.execute(
            sa.select(sa.func.count(), sa.func.min(position), sa.func.max(position)).where(*conditions(audit))
        ).one()
        found = (int(scanned[0]), scanned[1], scanned[2])
    total, first, last = found
    return total, (None if not total or first is None or last is None else audit.within(first, last))


def entry(conn: Connection, position: int) -> dict[str, Any] | None:
    query = select_entries(AuditFilter()).where(audit_log.c.position == position)
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def positions_by_version(conn: Connection, resource_id: UUID) -> dict[int, int]:
    """An entity's audit positions by its event versions (for its history)."""
    query = sa.select(audit_log.c.resource_version, audit_log.c.position).where(
        *conditions(AuditFilter(resource_id=resource_id))
    )
    return {row.resource_version: row.position for row in conn.execute(query)}


def all_positions(conn: Connection) -> list[int]:
    return list(conn.execute(sa.select(audit_log.c.position).order_by(audit_log.c.position)).scalars())


def statistics(
    conn: Connection, from_: datetime | None = None, to: datetime | None = None, top: int = 10
) -> dict[str, Any]:
    """Counts over ``from_``..``to``: in total, by action, resource type and status, and the
    ``top`` actors by entries (named actors only: anonymous and system actions have none)."""
    window = conditions(AuditFilter(from_=from_, to=to))
    c = audit_log.c
    groups = conn.execute(
        sa.select(c.action, c.resource_type, c.status, sa.func.count(), sa.func.max(c.position))
        .where(*window)
        .group_by(c.action, c.resource_type, c.status)
    ).all()
    by_action: dict[str, int] = {}
    by_resource_type: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for action, resource_type, status, count, _ in groups:
        for tally, name in ((by_action, action), (by_resource_type, resource_type), (by_status, status)):
            tally[name] = tally.get(name, 0) + count
    # Rows appear in position order, so bounding by the last position counted keeps both
    # queries on the same set of entries while the projector writes more.
    through = max((row[4] for row in groups), default=0)
    actors = conn.execute(
        sa.select(c.actor_id, sa.func.count().label("entries"))
        .where(*window, c.actor_id.is_not(None), c.position <= through)
        .group_by(c.actor_id)
        .order_by(sa.desc("entries"), c.actor_id)
        .limit(top)
    ).all()
    return {
        "total": sum(by_status.values()),
        "by_action": dict(sorted(by_action.items())),
        "by_resource_type": dict(sorted(by_resource_type.items())),
        "by_status": dict(sorted(by_status.items())),
        "top_actors": [{"actor_id": actor_id, "count": count} for actor_id, count in actors],
    }
