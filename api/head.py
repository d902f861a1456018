"""The head of the event stream for requests, read on the event loop: one query at a time per
process, each shared by every request that arrived before it was sent.

A request must see every change answered before it started (a revoked key is refused by the
next request to any process), so it needs a head read *after* it arrived: a request that finds a
query in flight waits for the next one, which every request arriving meanwhile shares. Under load
that is one query per round trip, not one per request, and no worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import psycopg
from eventsourcing.persistence import Notification
from psycopg import sql

from eventstore.database import Database
from eventstore.identity import Identity

ReadPage = Callable[[int, int, int], Awaitable[list[Notification]]]


QUERY_SECONDS = 5.0  # a query that takes longer is given up (the network may drop silently)


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
        self._runner: asyncio.Task[None] | None = None

    async def position(self) -> int:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieve)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        while self._next is not None:
            future, self._next = self._next, None
            try:
                future.set_result(await asyncio.wait_for(self._read(), QUERY_SECONDS))
            except Exception as error:  # every waiter of this round gets it (a hang: TimeoutError)
                future.set_exception(error)
            except BaseException:  # cancelled at shutdown: nobody is left waiting
                future.set_exception(RuntimeError("the head query was interrupted"))
                raise


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
        self._connecting = asyncio.Lock()

    async def read(self) -> int:
        rows = await self._fetch(self._statement)
        return int(rows[0][0] or 0) if rows else 0

    async def notifications(self, after: int, upto: int, limit: int) -> list[Notification]:
        rows = await asyncio.wait_for(self._fetch(self._page, (after, upto, limit)), QUERY_SECONDS)
        return [
            Notification(id=i, originator_id=o, originator_version=v, topic=t, state=bytes(s))
            for i, o, v, t, s in rows
        ]

    async def _fetch(
        self, statement: sql.Composed, parameters: tuple[int, ...] = ()
    ) -> list[tuple[Any, ...]]:
        conn = await self._connection()
        try:
            cursor = await conn.execute(statement, parameters or None)
            return await cursor.fetchall()
        except BaseException:  # an error, or a wait cut short: this connection is not reused
            if self._conn is conn:
                self._conn = None
            await _closed(conn)
            raise

    async def _connection(self) -> psycopg.AsyncConnection:
        async with self._connecting:  # one connection, however many callers find none
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5,
                    keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
                )  # fmt: skip
            return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _closed(conn)


async def _closed(conn: psycopg.AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
