"""Per-value counts of audit entries, kept by the projection in the batch's transaction.

A list filtered by one field (or by a resource's type and id, or by nothing) reads its total
and the span of positions it covers here; other filters (time windows, several fields, position
bounds) are counted by a scan of the matching entries, which those filters keep small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.audit_log.tables import define_audit_counts
from projections.catalog import live_generation
from projections.rows import upsert

DIMENSIONS = ("actor_id", "resource_id", "resource_type", "action", "status")
BOUNDS = ("from_", "to", "after_position", "before_position")
COUNTED_SHAPE = 2  # the audit_log shape that added the counts
# Traffic, not a change: left out of the audit list and export unless asked for by action.
USAGE_ACTION = "api_key.usage_recorded"
Key = tuple[str, str]

audit_log_counts = define_audit_counts(sa.MetaData(), 0).to_metadata(sa.MetaData(), name="audit_log_counts")


def _keys(row: dict[str, Any]) -> Iterator[Key]:
    yield "all", ""
    yield "resource", f"{row['resource_type']}:{row['resource_id']}"
    for dimension in DIMENSIONS:
        if row[dimension] is not None:
            yield dimension, str(row[dimension])


def add_counts(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    tally: dict[Key, list[int]] = {}
    for row in rows:
        for key in _keys(row):
            counted = tally.setdefault(key, [0, row["position"], row["position"]])
            counted[0] += 1
            counted[2] = row["position"]  # rows come in position order
    if not tally:
        return
    updates = {"entries": f'"{table.name}".{{0}} + excluded.{{0}}', "last_position": "excluded.{0}"}
    conn.execute(
        upsert(table, ("dimension", "value"), updates),
        [
            {"dimension": d, "value": v, "entries": n, "first_position": first, "last_position": last}
            for (d, v), (n, first, last) in tally.items()
        ],
    )


def counted(conn: Connection, audit: Any) -> tuple[int, int | None, int | None] | None:
    """(matches, first position, last position) of ``audit`` (an ``AuditFilter``) from the
    counts, or None when the filter is not one they answer."""
    fields = {name: value for name, value in asdict(audit).items() if value is not None}
    hiding = fields.pop("without_usage") and audit.hides_usage
    if any(bound in fields for bound in BOUNDS):
        return None
    if hiding:
        return _without_usage(conn, fields)
    return _counted(conn, fields)


def _without_usage(conn: Connection, fields: dict[str, Any]) -> tuple[int, int | None, int | None] | None:
    """The counts less the usage entries they include, where that is known from the counts
    alone: every usage entry is an ``api_key`` resource's, a ``success``, and recorded by the
    system with no actor (``eventstore.api_key_commands.USAGE_RECORDER``). The span stays the
    one with them (a page reads within it and leaves them out). A resource id: a scan."""
    if fields.keys() & {"resource_id"}:
        return None
    found = _counted(conn, fields)
    if found is None:
        return None
    usage_counted = not fields or fields in ({"resource_type": "api_key"}, {"status": "success"})
    if not usage_counted:  # an actor, another type or status: no usage entry matches
        return found
    usage = _counted(conn, {"action": USAGE_ACTION})
    total = found[0] - (usage[0] if usage else 0)
    return (total, found[1], found[2]) if total > 0 else (0, None, None)


def _counted(conn: Connection, fields: dict[str, Any]) -> tuple[int, int | None, int | None] | None:
    if not fields:
        key: Key = ("all", "")
    elif fields.keys() == {"resource_type", "resource_id"}:
        key = ("resource", f"{fields['resource_type']}:{fields['resource_id']}")
    elif len(fields) == 1:
        ((name, value),) = fields.items()
        key = (name, str(value))
    else:
        return None
    if live_generation(conn, "audit_log")[1] < COUNTED_SHAPE:
        return None  # live tables from before the counts (PostgreSQL, until the rebuild switches)
    c = audit_log_counts.c
    row = conn.execute(
        sa.select(c.entries, c.first_position, c.last_position).where(
            c.dimension == key[0], c.value == key[1]
        )
    ).first()
    return (0, None, None) if row is None else (int(row.entries), row.first_position, row.last_position)
