"""Projector workers: one thread per projection that catches up, then follows the live stream,
all fed by one reader per process (``projections.feed``), each on a connection it holds.

On PostgreSQL one worker per projection is active (a session advisory lock); others wait as hot
standbys and take over when the holder's connection goes. New events wake workers through the
library's NOTIFY; a short poll covers SQLite and missed notifications. ``stop`` ends each worker
after its current batch.

Two kinds of trouble, both retried with capped exponential backoff: the database is away (short
waits: it is usually back soon), or an event cannot be applied (longer waits: it takes a fix and a
deploy). The second is recorded in ``projection_failures`` for every process to see, and cleared
once the worker moves past the event. Log lines name the follower, the position and the error's
type, never the error's text: a database error's text holds the statement's parameters.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import Engine

from eventstore.audit_chain.checkpoints import Checkpointer, latest_checkpoint
from eventstore.audit_chain.tree import stored_size
from eventstore.database import DATABASE_UNAVAILABLE, Database
from eventstore.identity import Identity
from projections import catalog
from projections.base import Projection
from projections.feed import Feed, decoded_topics
from projections.runner import ErrorSummary, EventNotApplicableError, ProjectionRunner

logger = logging.getLogger("ledgerline.projector")


@dataclass(frozen=True)
class Backoff:
    """Waits between retries: ``first``, then doubling, never more than ``cap`` seconds."""

    first: float
    cap: float

    def after(self, previous: float | None) -> float:
        return self.first if previous is None else min(max(previous * 2, self.first), self.cap)


OUTAGE_BACKOFF = Backoff(first=0.1, cap=10.0)
FAILURE_BACKOFF = Backoff(first=1.0, cap=60.0)
PROGRESS_EVERY = 1.0  # seconds between two progress notes of a follower without generations
# Seconds between two checks that the lock's connection lives (not a round trip per batch: if it
# died meanwhile, the position's compare-and-set keeps a second leader from applying twice).
LEADERSHIP_CHECK = 1.0


def _at_most_every(seconds: float, check: Callable[[], object]) -> Callable[[], None]:
    last = time.monotonic()

    def checked() -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            check()
            last = time.monotonic()

    return checked


class FollowingWorker(threading.Thread):
    """Follows the event stream: catches up in batches, then waits for new events. Subclasses
    say what one step is (``_step`` returns how many events it consumed, or None when it
    cannot run yet) and which pool to clear after an outage."""

    def __init__(
        self, label: str, engine: Engine, database: Database, stop: threading.Event, *,
        poll_interval: float, batch_size: int, failure_backoff: Backoff = FAILURE_BACKOFF,
        outage_backoff: Backoff = OUTAGE_BACKOFF,
    ) -> None:  # fmt: skip
        super().__init__(name=f"projector-{label}", daemon=True)
        self.label = label
        self.engine = engine
        self.database = database
        self.stop = stop
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.failure_backoff = failure_backoff
        self.outage_backoff = outage_backoff
        self.is_leader = threading.Event()
        self._delay: float | None = None  # the last wait between retries; None once a step works
        self._failure_noted = True  # a failure may be on record from an earlier run (any process)

    def _step(self) -> int | None:
        raise NotImplementedError

    def _reached(self) -> int:
        """The position this follower has applied everything up to."""
        raise NotImplementedError

    def _store_pool(self) -> object | None:
        return None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self._leadership() as still_leading:
                    if still_leading is not None:
                        self._follow(still_leading)
            except EventNotApplicableError as failure:
                self._cannot_apply(failure)
            except Exception as error:
                self._interrupted(error)
        logger.info("projection %s: stopped", self.label)

    def _cannot_apply(self, failure: EventNotApplicableError) -> None:
        self._delay = delay = self.failure_backoff.after(self._delay)
        attempts = self._note_failure(failure)
        logger.error(
            "projection %s cannot apply the event at position %d (%s; attempt %s); retrying in %.2fs",
            self.label, failure.position, failure.error, attempts or "?", delay,
            extra={"projection": self.label, "position": failure.position, "error_type": failure.error_type,
                   "sqlstate": failure.sqlstate, "attempts": attempts, "retry_in": delay},
        )  # fmt: skip
        self.stop.wait(delay)

    def _note_failure(self, failure: EventNotApplicableError) -> int | None:
        """Record the failure for every process to see (its own short transaction)."""
        self._failure_noted = True
        try:
            return catalog.record_failure(
                self.engine, self.label, failure.position, failure.error_type, failure.sqlstate
            )
        except Exception as error:  # the database may be away too: the next attempt records it
            logger.warning(
                "projection %s: could not record its failure (%s)", self.label, ErrorSummary.of(error)
            )
            return None

    def _interrupted(self, error: Exception) -> None:
        self._delay = delay = self.outage_backoff.after(self._delay)
        what = "lost the database" if isinstance(error, DATABASE_UNAVAILABLE) else "was interrupted"
        summary = ErrorSummary.of(error)
        logger.warning(
            "projection %s %s (%s); retrying in %.2fs", self.label, what, summary, delay,
            extra={"projection": self.label, "error_type": summary.error_type, "retry_in": delay},
        )  # fmt: skip
        self._discard_dead_connections()
        self.stop.wait(delay)

    def _discard_dead_connections(self) -> None:
        """After an outage the store's pool still holds dead connections, which it would test
        one by one with growing pauses: drop them now so the next batch connects at once."""
        pool = self._store_pool()
        if pool is not None:
            try:
                pool.check()  # type: ignore[attr-defined]
            except Exception as error:  # the database may still be away; the next attempt will tell
                logger.debug("pool check failed (%s)", ErrorSummary.of(error))

    def _holding(self) -> AbstractContextManager[object]:
        """What the follower keeps while it follows (a connection, for a projection)."""
        return nullcontext()

    def _follow(self, still_leading: Callable[[], object]) -> None:
        with self._wakeups() as wait_for_events, self._holding():
            applied, since = 0, time.monotonic()
            while not self.stop.is_set():
                still_leading()  # raises once the lock's connection is gone: another may lead now
                consumed = self._step()
                if consumed is None:
                    self.stop.wait(5)
                    continue
                self._delay = None  # it works again: the next trouble starts from short waits
                if self._failure_noted:
                    catalog.clear_failure(self.engine, self.label, self._reached())
                    self._failure_noted = False
                applied += consumed
                if time.monotonic() - since >= 10 and applied:
                    logger.info("projection %s: %d events in %.0fs", self.label, applied,
                                time.monotonic() - since)  # fmt: skip
                    applied, since = 0, time.monotonic()
                if consumed < self.batch_size:
                    wait_for_events()

    @contextmanager
    def _leadership(self) -> Iterator[Callable[[], object] | None]:
        """Hold the projection's advisory lock (PostgreSQL) while this worker leads; yields a
        check that raises when the lock is lost, or None if stopped before leading."""
        if not self.database.is_postgres:
            self.is_leader.set()
            try:
                yield lambda: None
            finally:
                self.is_leader.clear()
            return
        key = zlib.crc32(f"ledgerline-projection:{self.label}".encode())
        with psycopg.connect(self.database.url, autocommit=True, connect_timeout=5) as conn:
            while not self.stop.is_set():
                if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
                    logger.info("projection %s: active", self.label)
                    self.is_leader.set()
                    try:
                        yield _at_most_every(LEADERSHIP_CHECK, lambda: conn.execute("SELECT 1"))
                    finally:
                        self.is_leader.clear()
                    return
                self.stop.wait(1.0)  # hot standby
            yield None

    @contextmanager
    def _wakeups(self) -> Iterator[Callable[[], object]]:
        if not self.database.is_postgres:
            yield lambda: self.stop.wait(self.poll_interval)
            return
        with psycopg.connect(self.database.url, autocommit=True, connect_timeout=5) as listener:
            listener.execute(f"LISTEN {self.database.events_table}")

            def wait() -> None:
                for _ in listener.notifies(timeout=self.poll_interval, stop_after=1):
                    pass

            yield wait


class ProjectionWorker(FollowingWorker):
    def __init__(
        self,
        projection: Projection,
        identity: Identity,
        engine: Engine,
        database: Database,
        stop: threading.Event,
        *,
        poll_interval: float = 0.2,
        batch_size: int = 500,
        failure_backoff: Backoff = FAILURE_BACKOFF,
        feed: Feed | None = None,
    ) -> None:
        super().__init__(projection.name, engine, database, stop, poll_interval=poll_interval,
                         batch_size=batch_size, failure_backoff=failure_backoff)  # fmt: skip
        self.projection = projection
        self.runner = ProjectionRunner(projection, identity, engine, batch_size=batch_size, feed=feed)

    def _store_pool(self) -> object | None:
        return getattr(getattr(self.runner.identity.recorder, "datastore", None), "pool", None)

    def _reached(self) -> int:
        return self.runner.position or 0

    def _holding(self) -> AbstractContextManager[object]:
        return self.runner.holding()

    def _step(self) -> int | None:
        with self.runner.reading() as conn:
            generation, shape, position = catalog.live_position(conn, self.projection.name)
        if shape != self.projection.shape:
            logger.error("projection %s: live tables have shape %s, code wants %s: run "
                         "`ledgerline projections rebuild %s`", self.projection.name, shape,
                         self.projection.shape, self.projection.name)  # fmt: skip
            return None
        return self.runner.run_batch(generation, position)


class CheckpointWorker(FollowingWorker):
    """Signs a checkpoint of the log's tree when it has grown, at most once per interval (one
    active per database, like a projection). The tree itself needs no worker: every append
    extends it in its own transaction. It looks every ``poll_interval`` (or on a new event), not
    every interval: an event that waits for a checkpoint gets it when it is due, not up to an
    interval later (readiness counts a stall from then)."""

    def __init__(
        self, checkpointer: Checkpointer, database: Database, stop: threading.Event, *,
        poll_interval: float = 0.2, failure_backoff: Backoff = FAILURE_BACKOFF,
    ) -> None:  # fmt: skip
        super().__init__(checkpointer.name, checkpointer.engine, database, stop,
                         poll_interval=min(poll_interval, checkpointer.interval), batch_size=1,
                         failure_backoff=failure_backoff)  # fmt: skip
        self.checkpointer = checkpointer

    def _reached(self) -> int:
        with self.engine.connect() as conn:
            latest = latest_checkpoint(conn, upto=stored_size(conn))
        return 0 if latest is None else latest.size

    def _step(self) -> int:
        if self.checkpointer.run_once() is not None:
            catalog.note_progress(self.engine, self.label, self._reached())
        return 0  # then wait for new events, or the interval


def start_workers(
    projections: list[Projection],
    identity: Identity,
    engine: Engine,
    database: Database,
    stop: threading.Event,
    *,
    failure_backoff: Backoff = FAILURE_BACKOFF,
) -> list[ProjectionWorker]:
    """One worker per projection, all fed by one reader (``Feed``)."""
    feed = Feed(identity, decoded_topics(projections))
    workers = [
        ProjectionWorker(p, identity, engine, database, stop, failure_backoff=failure_backoff, feed=feed)
        for p in projections
    ]
    for worker in workers:
        worker.start()
    return workers


def start_checkpointer(
    checkpointer: Checkpointer, database: Database, stop: threading.Event, *,
    failure_backoff: Backoff = FAILURE_BACKOFF,
) -> CheckpointWorker:  # fmt: skip
    worker = CheckpointWorker(checkpointer, database, stop, failure_backoff=failure_backoff)
    worker.start()
    return worker
