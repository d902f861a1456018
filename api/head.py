"""The head of the event stream for requests, read on the event loop: one query at a time per
process, each shared by every request that arrived before it was sent.

A request must see every change answered before it started (a revoked key is refused by the
next request to any process), so it needs a head read *after* it arrived: a request that finds a
query in flight waits for the next one, which every request arriving meanwhile shares. Under load
that is one query per round trip, not one per request, and no worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import psycopg
from eventsourcing.persistence import Notification
from psycopg import sql

from eventstore.database import Database
from eventstore.identity import Identity

ReadPage = Callable[[int, int, int], Awaitable[list[Notification]]]


class SharedHead:
    def __init__(
        self,
        read: Callable[[], Awaitable[int]],
        close: Callable[[], Awaitable[None]] | None = None,
        read_page: ReadPage | None = None,
    ) -> None:
        self._read = read
        self.close = close or _nothing
        self.read_page = read_page  # the events after a position, up to one (None: read in a thread)
        self._next: asyncio.Future[int] | None = None  # the query not sent yet, and its waiters
        self._running = False

    async def position(self) -> int:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieve)
            if not self._running:
                self._running = True
                asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        try:
            while self._next is not None:
                future, self._next = self._next, None
                try:
                    future.set_result(await self._read())
                except Exception as error:  # every waiter of this round gets it
                    future.set_exception(error)
        finally:
            self._running = False


async def _nothing() -> None:
    return None


def _retrieve(future: asyncio.Future[int]) -> None:
    """A round nobody waits for any more still has its error looked at (no asyncio warning)."""
    if not future.cancelled():
        future.exception()


def shared_head(identity: Identity, database: Database | None) -> SharedHead:
    """PostgreSQL: ``max(id)`` over one asynchronous connection of this process's own; SQLite
    (one process, a local file): the store's own query, in a worker thread."""
    if database is None or not database.is_postgres:
        return SharedHead(lambda: anyio.to_thread.run_sync(identity.head_position))
    head = _PostgresHead(database, identity)
    return SharedHead(head.read, head.close, head.notifications)


class _PostgresHead:
    def __init__(self, database: Database, identity: Identity) -> None:
        self._url = database.url.replace("postgresql+psycopg://", "postgresql://", 1)
        recorder = identity.recorder
        self._statement: sql.Composed = recorder.max_notification_id_statement  # type: ignore[attr-defined]
        self._page = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{} "
            "WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name))  # type: ignore[attr-defined]
        self._conn: psycopg.AsyncConnection | None = None

    async def read(self) -> int:
        cursor = await self._execute(self._statement)
        row = await cursor.fetchone()
        return int(row[0] or 0) if row is not None else 0

    async def notifications(self, after: int, upto: int, limit: int) -> list[Notification]:
        cursor = await self._execute(self._page, (after, upto, limit))
        return [
            Notification(id=i, originator_id=o, originator_version=v, topic=t, state=bytes(s))
            for i, o, v, t, s in await cursor.fetchall()
        ]

    async def _execute(
        self, statement: sql.Composed, parameters: tuple[int, ...] = ()
    ) -> psycopg.AsyncCursor[tuple[Any, ...]]:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5, options="-c statement_timeout=5000"
                )
            return await self._conn.execute(statement, parameters or None)
        except psycopg.Error:
            conn, self._conn = self._conn, None  # connect again next time
            if conn is not None:
                await conn.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
