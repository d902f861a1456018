"""The audit_log table is a cache: whoever owns the database can rewrite a row of it. Evidence is
the stored event, so an entry is checked against the one re-derived from its event by the
projection's own rule (``AuditLogProjection.entry``), before it is exported and in ``verify``.
Served rows are checked by their MAC (``unvouched``): the projection writes each row with a MAC
under a key derived from the secret key, which the database does not hold.

Personal data is sealed with a fresh nonce each time, so rows are compared as they are
presented (personal data revealed, or "[erased]" on both sides once its subject is erased).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from eventsourcing.persistence import Mapper, StoredEvent
from sqlalchemy.engine import Connection, Engine

from eventstore.database import DATABASE_UNAVAILABLE, Database
from eventstore.personal_data import Sealer
from projections import catalog
from projections.audit_log.presenter import present_entries
from projections.audit_log.projection import AuditLogProjection
from projections.audit_log.queries import audit_log
from projections.base import ProjectionContext

logger = logging.getLogger("ledgerline.audit")
BATCH = 1000
REPORTED = 100  # forged positions listed in a report (the count is always whole)


class ForgedEntryError(RuntimeError):
    """An audit_log row differs from the entry its stored event gives (or has no such event)."""

    def __init__(self, position: int) -> None:
        super().__init__(
            f"the audit_log row at position {position} differs from its stored event: the read table "
            "was changed outside the projection (run `ledgerline audit verify`; rebuild the projection)"
        )
        self.position = position


@dataclass
class EntryReport:
    entries_verified: int = 0
    forged: int = 0
    forged_positions: list[int] = field(default_factory=list)  # the first REPORTED of them


class AuditEvidence:
    """Re-derives audit entries from the stored events they come from."""

    def __init__(self, mapper: Mapper[UUID], database: Database, sealer: Sealer) -> None:
        self._database, self.sealer = database, sealer
        self._projection = AuditLogProjection(ProjectionContext(sealer, mapper))

    def forged_in(self, conn: Connection, rows: Iterable[Any]) -> list[int]:
        """The positions among ``rows`` (audit_log rows) that their stored events contradict."""
        rows = list(rows)
        derived = list(self._derived(conn, [row["position"] for row in rows]))
        expected = {entry["position"]: _canonical(entry) for entry in self._comparable(derived)}
        return [
            entry["position"]
            for entry in self._comparable(rows)
            if expected.get(entry["position"]) != _canonical(entry)
        ]

    def unvouched(self, rows: Iterable[Any]) -> list[int]:
        """The positions among ``rows`` whose MAC fails: not written as the projection wrote them
        (no query: what serving checks; ``forged_in`` re-derives each row from its event)."""
        return [row["position"] for row in rows if not self._projection.vouched(row)]

    def verify(self, engine: Engine) -> EntryReport:
        """Every audit_log row against its event, a keyset page at a time."""
        report, after = EntryReport(), 0
        while True:
            with engine.connect() as conn:
                rows = list(
                    conn.execute(
                        sa.select(audit_log)
                        .where(audit_log.c.position > after)
                        .order_by(audit_log.c.position)
                        .limit(BATCH)
                    ).mappings()
                )
                forged = sorted(self.forged_in(conn, rows) + self._missing(conn, after, rows)) if rows else []
                if len(rows) < BATCH:  # and rows removed after the last one the projection wrote
                    forged += self._removed_from_tail(conn, rows[-1]["position"] if rows else after)
            report.entries_verified += len(rows)
            report.forged += len(forged)
            report.forged_positions.extend(forged[: REPORTED - len(report.forged_positions)])
            if len(rows) < BATCH:
                return report
            after = rows[-1]["position"]

    def _missing(self, conn: Connection, after: int, rows: list[Any]) -> list[int]:
        """Audited events between ``after`` and the last of ``rows`` that have no row (removed)."""
        present = {row["position"] for row in rows}
        return [p for p in self._audited(conn, after, rows[-1]["position"]) if p not in present]

    def _removed_from_tail(self, conn: Connection, last: int) -> list[int]:
        """Audited events after the last row, up to where the projection says it got (its rows
        and that position commit together: read first, it bounds the rows read after it); past
        that is the projection's lag, not evidence of a removal."""
        name = self._projection.name
        tracked = catalog.position(conn, name, catalog.live_generation(conn, name)[0])
        if tracked <= last:
            return []
        present = set(
            conn.execute(
                sa.select(audit_log.c.position).where(
                    audit_log.c.position > last, audit_log.c.position <= tracked
                )
            ).scalars()
        )
        return [p for p in self._audited(conn, last, tracked) if p not in present]

    def _audited(self, conn: Connection, after: int, upto: int) -> list[int]:
        column = "rowid" if self._database.is_sqlite else "notification_id"
        query = sa.text(
            f"SELECT {column} FROM {self._database.events_table} "
            f"WHERE {column} > :after AND {column} <= :upto AND topic IN :topics ORDER BY {column}"
        ).bindparams(sa.bindparam("topics", expanding=True))
        bounds = {"after": after, "upto": upto, "topics": sorted(self._projection.topics)}
        return [position for (position,) in conn.execute(query, bounds)]

    def _derived(self, conn: Connection, positions: list[int]) -> Iterator[dict[str, Any]]:
        topics = self._projection.topics
        events = [(p, stored) for p, stored in self._stored(conn, positions) if stored.topic in topics]
        # The data keys of the page's subjects in one query, not one per event decoded.
        self.sealer.preload(stored.state.decode("utf-8", "replace") for _, stored in events)
        for position, stored in events:
            try:
                entry = self._projection.entry(position, stored)
            except DATABASE_UNAVAILABLE:
                raise
            except Exception as error:  # bytes that no longer decode give no entry: its row is forged
                logger.warning(
                    "the stored event at position %d no longer decodes (%s)", position, type(error).__name__
                )
                continue
            yield entry

    def _stored(self, conn: Connection, positions: list[int]) -> Iterator[tuple[int, StoredEvent]]:
        if not positions:
            return
        column = "rowid" if self._database.is_sqlite else "notification_id"
        query = sa.text(
            f"SELECT {column} AS position, originator_id, originator_version, topic, state "
            f"FROM {self._database.events_table} WHERE {column} IN :positions"
        ).bindparams(sa.bindparam("positions", expanding=True))
        for row in conn.execute(query, {"positions": positions}):
            originator = row.originator_id if isinstance(row.originator_id, UUID) else UUID(row.originator_id)
            yield row.position, StoredEvent(originator, row.originator_version, row.topic, bytes(row.state))

    def _comparable(self, rows: list[Any]) -> list[dict[str, Any]]:
        """Rows as clients see them, as plain JSON values (the stored row's types and the
        projection's differ: aware datetimes from SQLite, tuples, JSON round trips)."""
        unsealed = [{**row, "leaf_hash": None} for row in rows]  # compared as entries, not as leaves
        try:
            return [_plain(entry) for entry in present_entries(unsealed, self.sealer)]
        except DATABASE_UNAVAILABLE:  # the data keys could not be read: no verdict on the row
            raise
        except Exception:  # a forged sealed value need not even decode: one at a time
            return [self._one(row) for row in unsealed]

    def _one(self, row: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(_plain(present_entries([row], self.sealer)[0]))
        except DATABASE_UNAVAILABLE:
            raise
        except Exception:  # unreadable: equal to no genuine entry
            return {"position": row["position"], "unreadable": True}


def _canonical(entry: Mapping[str, Any]) -> str:
    """Compared as JSON text, not Python values: ``false``, ``0`` and ``0.0`` differ."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=repr)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value
