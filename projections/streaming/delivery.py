"""The deliverer: one thread per process running an event loop, one task per sink it leads.

Every ``poll_interval`` it reads how far the ``audit_log`` projection has got (``EntrySource``)
and wakes the sinks behind it; every ``discover_interval`` it reads the live subscriptions
(paused and deleted ones stop) and takes the lead of the sinks nobody leads. Leadership is the
projections' mechanism: a session advisory lock per sink on PostgreSQL (one connection for all
of this process's sinks), held while the connection lives; the cursor moves by compare-and-set,
so a deliverer that lost its lock unnoticed cannot move it twice. On SQLite a file lock elects
one deliverer for the whole database.

A sink's task delivers its entries one at a time, in position order, and moves its cursor after
each batch (or after the last acknowledged entry before a failure), so a crash re-sends at most
one batch. A failure (non-2xx, timeout, connection error, a target the SSRF guard refuses) is
recorded and retried after a capped exponential backoff with jitter, re-reading the batch (an
erasure in between is honoured). Each sink has its own task and HTTP client: a slow receiver
holds up nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from domain.errors import SubscriptionNotFoundError
from eventstore.database import Database
from eventstore.identity import Identity
from projections.audit_log.evidence import ForgedEntryError
from projections.runner import ErrorSummary
from projections.streaming import cursors
from projections.streaming.options import StreamOptions
from projections.streaming.sinks import DeliveryError, NatsSink, Sink, WebhookSink
from projections.streaming.source import EntrySource

logger = logging.getLogger("ledgerline.stream")
# Key usage is traffic, not a change: a webhook gets it only when its filter names it (as the audit
# list shows it only when asked for); NATS gets every entry.
TRAFFIC = ("api_key.usage_recorded",)


@dataclass(frozen=True)
class SinkSpec:
    name: str
    start: int  # the cursor of a new sink: the position before the first to deliver
    actions: Sequence[str] | None
    resource_types: Sequence[str] | None
    make: Callable[[], Sink]
    unless_named: Sequence[str] = ()  # actions delivered only when ``actions`` names them


@dataclass
class SinkStats:
    """This process's figures for one sink (the table's ``stream_cursors`` sums every process's)."""

    delivered: int = 0
    failed: int = 0
    delivered_through: int = 0


class Leadership:
    """One active deliverer per sink: a session advisory lock per sink on PostgreSQL, as
    projections; on SQLite one deliverer for the whole file, elected by an exclusive lock on
    ``<database>.stream-lock`` (``ledgerline project`` beside ``serve``, or two ``serve``: the
    other waits, and takes over when the leader's process ends, the kernel dropping its lock)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._conn: psycopg.Connection[Any] | None = None
        self._held: set[str] = set()
        self._file_lock: int | None = None  # SQLite: the open, locked lock file

    @staticmethod
    def key(name: str) -> int:
        return int.from_bytes(
            hashlib.sha256(f"ledgerline-stream:{name}".encode()).digest()[:8], "big", signed=True
        )

    def acquire(self, name: str) -> bool:
        if not self.database.is_postgres:
            return self._lead_the_file()
        if name in self._held:
            return True
        if self._conn is None:
            self._conn = psycopg.connect(self.database.url, autocommit=True, connect_timeout=5)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key(name),)).fetchone()
        if row is not None and row[0]:
            self._held.add(name)
            return True
        return False

    def _lead_the_file(self) -> bool:
        if self._file_lock is not None:
            return True
        fd = os.open(f"{self.database.sqlite_path}.stream-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another deliverer leads this file
            os.close(fd)
            return False
        self._file_lock = fd
        return True

    def release(self, name: str) -> None:
        if self._conn is not None and name in self._held:
            self._held.discard(name)
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key(name),))

    def check(self) -> None:
        """Raises once the locks' connection is gone (another process may lead now)."""
        if self._conn is not None:
            self._conn.execute("SELECT 1")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        fd, self._file_lock = self._file_lock, None
        if fd is not None:
            os.close(fd)  # the lock goes with it
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                return


class StreamDeliverer(threading.Thread):
    def __init__(
        self,
        identity: Identity,
        source: EntrySource,
        engine: Engine,
        database: Database,
        options: StreamOptions,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="stream-deliverer", daemon=True)
        self.identity, self.source, self.engine, self.database = identity, source, engine, database
        self.options, self.stop = options, stop
        self.stats: dict[str, SinkStats] = {}
        self.bound = 0  # how far the audit_log projection has got
        self._stopping = False  # the process stops: every sink ends after its entry in flight
        self._retiring: set[str] = set()  # sinks paused or deleted: they end the same way
        self._retirements: set[asyncio.Task[None]] = set()  # those sinks ending, in the background
        self._moved: asyncio.Condition | None = None

    def counters(self) -> list[cursors.SinkCounters]:
        """This process's counters per sink it has led (for a metrics endpoint)."""
        return [
            cursors.SinkCounters(name, s.delivered, s.failed, max(0, self.bound - s.delivered_through))
            for name, s in sorted(self.stats.items())
        ]

    def run(self) -> None:
        asyncio.run(self._main())

    # ---- the manager ------------------------------------------------------------------------

    async def _main(self) -> None:
        self._moved = asyncio.Condition()
        leadership = Leadership(self.database)
        tasks: dict[str, asyncio.Task[None]] = {}
        loop = asyncio.get_running_loop()
        next_look = 0.0
        try:
            while not self.stop.is_set():
                try:
                    await self._note_bound(await asyncio.to_thread(self.source.bound))
                    if loop.time() >= next_look:
                        await self._steer(tasks, leadership)
                        next_look = loop.time() + self.options.discover_interval
                    await self._reap(tasks, leadership)
                except Exception as error:  # the database is away, the lock connection died
                    logger.warning("stream deliverer interrupted (%s)", ErrorSummary.of(error))
                    await self._cancel(tasks)
                    leadership.close()
                    next_look = loop.time() + self.options.discover_interval
                await asyncio.sleep(self.options.poll_interval)
        finally:
            await self._finish(tasks)
            leadership.close()

    async def _note_bound(self, bound: int) -> None:
        assert self._moved is not None
        async with self._moved:
            self.bound = bound
            self._moved.notify_all()

    async def _steer(self, tasks: dict[str, asyncio.Task[None]], leadership: Leadership) -> None:
        wanted = await asyncio.to_thread(self._wanted)
        for name in [name for name in tasks if name not in wanted]:  # paused or deleted
            logger.info("stream %s: stopped (paused or deleted)", name)
            self._retiring.add(name)  # until its task ended and its lead is released
            retirement = asyncio.create_task(self._retire(name, tasks.pop(name), leadership))
            self._retirements.add(retirement)  # in the background: the loop serves the others
            retirement.add_done_callback(self._retirements.discard)
        for name, spec in wanted.items():
            if name in tasks or name in self._retiring:  # resumed while retiring: the next look
                continue
            if await asyncio.to_thread(leadership.acquire, name):
                logger.info("stream %s: active", name)
                tasks[name] = asyncio.create_task(self._follow(spec), name=f"stream-{name}")
        await asyncio.to_thread(leadership.check)

    def _wanted(self) -> dict[str, SinkSpec]:
        """The sinks that should run: every active subscription, and NATS when configured."""
        specs: dict[str, SinkSpec] = {}
        options = self.options
        for subscription_id in self.identity.subscription_ids(fresh=True):
            try:
                subscription = self.identity.get_subscription(subscription_id, fresh=True)
            except SubscriptionNotFoundError:
                continue
            if subscription.paused:
                continue
            name = cursors.subscription_cursor(subscription.id)
            secret = self.identity.subscription_secret(subscription)

            def webhook(s: Any = subscription, n: str = name, k: str = secret) -> Sink:
                return WebhookSink(n, s.id, s.url, k, options.policy, options.timeout)

            specs[name] = SinkSpec(
                name,
                subscription.from_position - 1,
                subscription.actions,
                subscription.resource_types,
                webhook,
                unless_named=TRAFFIC,
            )
        if options.nats_url:
            url = options.nats_url
            specs[cursors.NATS] = SinkSpec(
                cursors.NATS, 0, None, None, lambda: NatsSink(cursors.NATS, url, options.timeout)
            )
        return specs

    async def _reap(self, tasks: dict[str, asyncio.Task[None]], leadership: Leadership) -> None:
        """A task that ended (the database went, another deliverer moved its cursor) gives up its
        lead; the next look takes it again."""
        for name, task in list(tasks.items()):
            if task.done():
                del tasks[name]
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    logger.warning("stream %s interrupted (%s)", name, ErrorSummary.of(error))
                await asyncio.to_thread(leadership.release, name)

    async def _retire(self, name: str, task: asyncio.Task[None], leadership: Leadership) -> None:
        """End a sink after the entry in flight, its cursor moved past what was acknowledged (a
        paused subscription resumes where it stopped, without re-sending), then give up its lead."""
        assert self._moved is not None
        async with self._moved:
            self._moved.notify_all()
        try:
            await asyncio.wait({task}, timeout=self.options.timeout + 1)
            await self._cancel({name: task})
            await asyncio.to_thread(leadership.release, name)
        except Exception as error:  # the lock connection died: the next look starts over
            logger.warning("stream %s: retiring interrupted (%s)", name, ErrorSummary.of(error))
        finally:
            self._retiring.discard(name)

    def _ending(self, name: str) -> bool:
        return self._stopping or name in self._retiring

    async def _cancel(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        tasks.clear()

    async def _finish(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        """Stopping: each sink ends after the entry in flight and records how far it got."""
        self._stopping = True
        if self._moved is not None:
            async with self._moved:
                self._moved.notify_all()
        if tasks:
            await asyncio.wait(tasks.values(), timeout=self.options.timeout + 1)
        await self._cancel(tasks)
        await asyncio.gather(*self._retirements, return_exceptions=True)

    # ---- one sink ---------------------------------------------------------------------------

    async def _follow(self, spec: SinkSpec) -> None:
        sink = spec.make()
        stats = self.stats.setdefault(spec.name, SinkStats())
        try:
            cursor = await asyncio.to_thread(cursors.open_cursor, self.engine, spec.name, spec.start)
            stats.delivered_through, delay = cursor, None
            while not self._ending(spec.name):
                await self._wait_beyond(cursor, spec.name)
                if self._ending(spec.name):
                    return
                cursor, failure = await self._deliver_batch(spec, sink, cursor, stats)
                if failure is None:
                    delay = None
                    continue
                stats.failed += 1
                await asyncio.to_thread(cursors.note_failure, self.engine, spec.name, failure)
                delay = self._next_delay(delay)
                wait = random.uniform(delay / 2, delay)  # noqa: S311 (jitter, not crypto)
                logger.warning("stream %s: delivery after position %d failed (%s); retrying in %.2fs",
                               spec.name, cursor, failure, wait)  # fmt: skip
                await self._pause(wait, spec.name)
        finally:
            await sink.close()

    async def _pause(self, seconds: float, name: str) -> None:
        """Wait ``seconds`` before a retry, or less if the sink is ending."""
        assert self._moved is not None
        async with self._moved:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait_for(lambda: self._ending(name)), seconds)

    async def _wait_beyond(self, cursor: int, name: str) -> None:
        assert self._moved is not None
        async with self._moved:
            await self._moved.wait_for(lambda: self.bound > cursor or self._ending(name))

    async def _deliver_batch(
        self, spec: SinkSpec, sink: Sink, cursor: int, stats: SinkStats
    ) -> tuple[int, str | None]:
        """Deliver the next batch; returns the new cursor and the failure that stopped it, if any."""
        try:
            batch = await asyncio.to_thread(
                self.source.next_batch,
                cursor,
                self.options.batch_size,
                spec.actions,
                spec.resource_types,
                spec.unless_named,
            )
        except ForgedEntryError as forged:
            return cursor, f"the audit entry at position {forged.position} fails its MAC (run audit verify)"
        reached, delivered, failure = cursor, 0, None
        for row in batch.rows:
            if self._ending(spec.name):
                break
            try:
                await sink.deliver(await asyncio.to_thread(self.source.present, row))
            except DeliveryError as error:
                failure = error.reason
                break
            reached, delivered = row["position"], delivered + 1
        else:
            reached = batch.end
        if reached != cursor:
            await asyncio.to_thread(cursors.advance, self.engine, spec.name, cursor, reached, delivered)
        stats.delivered += delivered
        stats.delivered_through = reached
        return reached, failure

    def _next_delay(self, previous: float | None) -> float:
        """Doubling from ``retry_first`` up to ``retry_cap`` (each wait is drawn from the upper
        half of it: receivers that failed together do not retry together)."""
        return self.options.retry_first if previous is None else min(previous * 2, self.options.retry_cap)
