"""The batch path shared by row-per-aggregate projections: load the touched rows once, fold the
batch's events into them in memory, upsert them in one statement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import msgspec
import sqlalchemy as sa
from psycopg import sql as psycopg_sql
from psycopg.types.json import Json
from sqlalchemy.engine import Connection

from projections.base import Positioned

Row = dict[str, Any]
_json = msgspec.json.encode  # JSON columns' text on the way into COPY (json.dumps took longer)
Evolve = Callable[[Row | None, Positioned], Row | None]


def fold_and_upsert(conn: Connection, table: sa.Table, events: Sequence[Positioned], evolve: Evolve) -> None:
    ids = {item.event.originator_id for item in events}
    rows: dict[UUID, Row | None] = dict.fromkeys(ids)
    for chunk in _chunks(list(ids), 500):
        for existing in conn.execute(sa.select(table).where(table.c.id.in_(chunk))).mappings():
            rows[existing["id"]] = dict(existing)
    for item in events:
        rows[item.event.originator_id] = evolve(rows[item.event.originator_id], item)
    changed = [row for row in rows.values() if row is not None]
    if changed:
        conn.execute(_upsert(conn, table), changed)


def append_rows(conn: Connection, table: sa.Table, rows: Sequence[Row]) -> None:
    """Insert new rows: one COPY stream on PostgreSQL (no round trip per row), executemany on
    SQLite. Same transaction either way."""
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(table), list(rows))
        return
    columns = [column.name for column in table.columns]
    as_json = {column.name for column in table.columns if isinstance(column.type, sa.JSON)}
    statement = psycopg_sql.SQL("COPY {} ({}) FROM STDIN").format(
        psycopg_sql.Identifier(table.name), psycopg_sql.SQL(", ").join(map(psycopg_sql.Identifier, columns))
    )
    with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row([Json(row[name], _json) if name in as_json else row[name] for name in columns])


def _upsert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(table)
    updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name != "id"}
    return statement.on_conflict_do_update(index_elements=[table.c.id], set_=updates)


def _chunks(items: list[UUID], size: int) -> list[list[UUID]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
