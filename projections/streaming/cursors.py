"""Each sink's cursor in the database (``stream_cursors``): the position through which it has
delivered every matching audit entry, moved only after the receiver acknowledged, by
compare-and-set (a second deliverer that read the same start fails instead of moving it twice).

The counters (delivered, failed) and the last error live beside it, so every process (the API
showing a subscription, a metrics endpoint) reads the same figures. ``last_error`` is a short
description chosen by the deliverer (a status code, an exception's type), never a receiver's text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from eventstore.database import writing

metadata = sa.MetaData()
stream_cursors = sa.Table(
    "stream_cursors",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("delivered_through", sa.BigInteger(), nullable=False),
    sa.Column("delivered", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("failed", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_delivered_at", sa.DateTime(timezone=True), nullable=True),
)
NATS = "nats"


class CursorMovedError(RuntimeError):
    """Another deliverer moved the cursor first: this one no longer leads the sink."""


def subscription_cursor(subscription_id: object) -> str:
    return f"subscription:{getattr(subscription_id, 'hex', subscription_id)}"


@dataclass(frozen=True)
class CursorState:
    name: str
    delivered_through: int
    delivered: int = 0
    failed: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    last_delivered_at: datetime | None = None

    def lag(self, head: int) -> int:
        """Positions written that this sink has not gone past yet (delivered or not matching)."""
        return max(0, head - self.delivered_through)


def open_cursor(engine: Engine, name: str, start: int) -> int:
    """The cursor's position, created at ``start`` (the position before the first to deliver)
    if it has none yet."""
    with writing(engine) as conn:
        found = conn.execute(
            sa.select(stream_cursors.c.delivered_through).where(stream_cursors.c.name == name)
        ).scalar_one_or_none()
        if found is not None:
            return int(found)
        conn.execute(stream_cursors.insert().values(name=name, delivered_through=start))
        return start


def advance(engine: Engine, name: str, expected: int, new: int, delivered: int) -> None:
    """Move the cursor from ``expected`` to ``new`` after ``delivered`` acknowledged deliveries."""
    now = datetime.now(UTC)
    values: dict[str, object] = {"delivered_through": new, "last_error": None}
    if delivered:
        values.update(
            delivered=stream_cursors.c.delivered + delivered, last_attempt_at=now, last_delivered_at=now
        )
    with writing(engine) as conn:
        moved = conn.execute(
            stream_cursors.update()
            .where(stream_cursors.c.name == name, stream_cursors.c.delivered_through == expected)
            .values(**values)
        ).rowcount
        if moved != 1:
            raise CursorMovedError(f"{name} is no longer at {expected}")


def note_failure(engine: Engine, name: str, error: str) -> None:
    now = datetime.now(UTC)
    with writing(engine) as conn:
        conn.execute(
            stream_cursors.update()
            .where(stream_cursors.c.name == name)
            .values(failed=stream_cursors.c.failed + 1, last_error=error[:200], last_attempt_at=now)
        )


def cursor_states(conn: Connection, names: Iterable[str] | None = None) -> dict[str, CursorState]:
    query = sa.select(stream_cursors)
    if names is not None:
        query = query.where(stream_cursors.c.name.in_(list(names)))
    return {row.name: _state(row) for row in conn.execute(query).mappings()}


def _state(row: sa.RowMapping) -> CursorState:
    return CursorState(
        name=row["name"],
        delivered_through=row["delivered_through"],
        delivered=row["delivered"],
        failed=row["failed"],
        last_error=row["last_error"],
        last_attempt_at=_utc(row["last_attempt_at"]),
        last_delivered_at=_utc(row["last_delivered_at"]),
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite keeps no offset


@dataclass(frozen=True)
class SinkCounters:
    """What a metrics endpoint shows per sink: ``ledgerline_stream_delivered_total{sink}``,
    ``..._failed_total{sink}``, ``..._lag_events{sink}``."""

    sink: str
    delivered: int
    failed: int
    lag: int


def sink_counters(engine: Engine, head: int) -> list[SinkCounters]:
    """Every sink's counters, summed over every deliverer that ever ran (they are in the table)."""
    with engine.connect() as conn:
        states = cursor_states(conn)
    return [
        SinkCounters(state.name, state.delivered, state.failed, state.lag(head))
        for state in sorted(states.values(), key=lambda state: state.name)
    ]
