"""Projector workers: one thread per projection that catches up, then follows the live stream.

On PostgreSQL one worker per projection is active (a session advisory lock); others wait as hot
standbys and take over when the holder's connection goes. New events wake workers through the
library's NOTIFY; a short poll covers SQLite and missed notifications. A lost database is
retried with capped exponential backoff; ``stop`` ends each worker after its current batch.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import Engine

from eventstore.audit_chain.sealer import ChainSealer
from eventstore.database import Database
from eventstore.identity import Identity
from projections import catalog
from projections.base import Projection
from projections.runner import ProjectionRunner

logger = logging.getLogger("ledgerline.projector")
MAX_BACKOFF = 10.0


class FollowingWorker(threading.Thread):
    """Follows the event stream: catches up in batches, then waits for new events. Subclasses
    say what one step is (``_step`` returns how many events it consumed, or None when it
    cannot run yet) and which pool to clear after an outage."""

    def __init__(
        self, label: str, engine: Engine, database: Database, stop: threading.Event, *,
        poll_interval: float, batch_size: int,
    ) -> None:  # fmt: skip
        super().__init__(name=f"projector-{label}", daemon=True)
        self.label = label
        self.engine = engine
        self.database = database
        self.stop = stop
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.is_leader = threading.Event()
        self.backoff = 0.1

    def _step(self) -> int | None:
        raise NotImplementedError

    def _store_pool(self) -> object | None:
        return None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self._leadership() as still_leading:
                    if still_leading is not None:
                        self._follow(still_leading)
            except Exception:
                logger.warning("projection %s: lost the database; retrying in %.1fs",
                               self.label, self.backoff, exc_info=True)  # fmt: skip
                self._discard_dead_connections()
                self.stop.wait(self.backoff)
                self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        logger.info("projection %s: stopped", self.label)

    def _discard_dead_connections(self) -> None:
        """After an outage the store's pool still holds dead connections, which it would test
        one by one with growing pauses: drop them now so the next batch connects at once."""
        pool = self._store_pool()
        if pool is not None:
            try:
                pool.check()  # type: ignore[attr-defined]
            except Exception:  # the database may still be away; the next attempt will tell
                logger.debug("pool check failed", exc_info=True)

    def _follow(self, still_leading: Callable[[], object]) -> None:
        with self._wakeups() as wait_for_events:
            applied, since = 0, time.monotonic()
            while not self.stop.is_set():
                still_leading()  # raises once the lock's connection is gone: another may lead now
                consumed = self._step()
                if consumed is None:
                    self.stop.wait(5)
                    continue
                self.backoff = 0.1  # the database answers: the next outage starts from short waits
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
                        yield lambda: conn.execute("SELECT 1")
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
    ) -> None:
        super().__init__(
            projection.name, engine, database, stop, poll_interval=poll_interval, batch_size=batch_size
        )
        self.projection = projection
        self.runner = ProjectionRunner(projection, identity, engine, batch_size=batch_size)

    def _store_pool(self) -> object | None:
        return getattr(getattr(self.runner.identity.recorder, "datastore", None), "pool", None)

    def _step(self) -> int | None:
        with self.engine.connect() as conn:
            generation, shape = catalog.live_generation(conn, self.projection.name)
        if shape != self.projection.shape:
            logger.error("projection %s: live tables have shape %s, code wants %s: run "
                         "`ledgerline projections rebuild %s`", self.projection.name, shape,
                         self.projection.shape, self.projection.name)  # fmt: skip
            return None
        return self.runner.run_batch(generation)


class SealWorker(FollowingWorker):
    """Extends the audit chain as events arrive (one active sealer, like a projection)."""

    def __init__(self, sealer: ChainSealer, stop: threading.Event, *, poll_interval: float = 0.2) -> None:
        super().__init__(sealer.name, sealer.engine, sealer.database, stop,
                         poll_interval=poll_interval, batch_size=sealer.batch_size)  # fmt: skip
        self.sealer = sealer

    def _step(self) -> int:
        return self.sealer.run_batch()


def start_workers(
    projections: list[Projection],
    identity: Identity,
    engine: Engine,
    database: Database,
    stop: threading.Event,
) -> list[ProjectionWorker]:
    workers = [ProjectionWorker(p, identity, engine, database, stop) for p in projections]
    for worker in workers:
        worker.start()
    return workers


def start_sealer(sealer: ChainSealer, stop: threading.Event) -> SealWorker:
    worker = SealWorker(sealer, stop)
    worker.start()
    return worker
