"""What a sink delivers next: audit entries after its cursor, exactly as ``GET /audit-logs/{position}``
shows them (the same query, the same MAC check, the same presenter).

Gap safety is the projection's: the ``audit_log`` projection reads the store gap-safely (decision
0005) and writes its rows and its position in one transaction, so every row at or below that
position is there for good. The source reads that position first, then only rows up to it: an
event that commits late is below no position a sink has passed. The cursor moves past positions
that match nothing too, so a sink's lag is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine

from eventstore.personal_data import Sealer
from projections import catalog
from projections.audit_log.evidence import ForgedEntryError
from projections.audit_log.presenter import present_entry
from projections.audit_log.projection import AuditLogProjection
from projections.audit_log.queries import AuditFilter, audit_log, select_entries


@dataclass(frozen=True)
class Batch:
    rows: list[dict[str, Any]]  # as stored (vouched), in position order: ``present`` each one
    end: int  # the cursor once every entry is delivered (past the ones that do not match)


def audit_log_position(conn: Connection) -> int:
    """Every audit entry at or below this position is in the table (the projection's own)."""
    name = AuditLogProjection.name
    return catalog.position(conn, name, catalog.live_generation(conn, name)[0])


class EntrySource:
    def __init__(self, engine: Engine, projection: AuditLogProjection, sealer: Sealer) -> None:
        self.engine, self.projection, self.sealer = engine, projection, sealer

    def bound(self) -> int:
        with self.engine.connect() as conn:
            return audit_log_position(conn)

    def next_batch(
        self,
        after: int,
        limit: int,
        actions: Sequence[str] | None = None,
        resource_types: Sequence[str] | None = None,
        unless_named: Sequence[str] = (),
    ) -> Batch:
        """``unless_named``: actions left out when ``actions`` does not name them (traffic)."""
        with self.engine.connect() as conn:
            bound = audit_log_position(conn)  # first: it bounds the rows read after it
            if bound <= after:
                return Batch([], after)
            query = select_entries(
                AuditFilter(after_position=after, before_position=bound + 1), order="asc", limit=limit
            )
            if actions is not None:
                query = query.where(audit_log.c.action.in_(list(actions)))
            elif unless_named:
                query = query.where(audit_log.c.action.not_in(list(unless_named)))
            if resource_types is not None:
                query = query.where(audit_log.c.resource_type.in_(list(resource_types)))
            rows = [dict(row) for row in conn.execute(query).mappings()]
        for row in rows:  # a row the projection did not write is never sent
            if not self.projection.vouched(row):
                raise ForgedEntryError(row["position"])
        end = rows[-1]["position"] if len(rows) == limit else bound
        return Batch(rows, end)

    def present(self, row: dict[str, Any]) -> dict[str, Any]:
        """The entry as the API shows it now, just before it is sent: personal data revealed one
        entry at a time, so an erasure while a batch is being sent reaches the entries after it."""
        return present_entry(row, self.sealer)
