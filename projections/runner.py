"""One projection's batch step: take the entries after a generation's position from the feed
(read and decoded once for every projection of the process), write the effect of the ones it
cares about and the new position in one transaction.

An event the projection cannot apply (a value its tables cannot hold, a bug) must not hide in a
failing batch: the batch is retried one event per transaction, so everything before the culprit
is applied and the culprit is named by its position. The error is reduced to its type (and
SQLSTATE): the text of a database error carries the statement's parameters, personal data included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy.exc
from sqlalchemy.engine import Connection, Engine

from eventstore.database import DATABASE_UNAVAILABLE, writing
from eventstore.identity import Identity
from projections import catalog
from projections.base import Positioned, Projection
from projections.feed import Entry, Feed, decoded_topics

DEFAULT_BATCH = 500
SQLSTATE = re.compile(r"^[0-9A-Z]{5}$")
# Not a verdict on an event: the database is away, or another worker moved the position first.
NOT_THE_EVENT: tuple[type[BaseException], ...] = (*DATABASE_UNAVAILABLE, catalog.TrackingConflictError)


@dataclass(frozen=True)
class ErrorSummary:
    """What may be said of an error anywhere (logs, tables, responses): its type and SQLSTATE."""

    error_type: str
    sqlstate: str | None = None

    @classmethod
    def of(cls, error: BaseException) -> ErrorSummary:
        cause: BaseException = error
        if isinstance(error, sqlalchemy.exc.StatementError) and isinstance(error.orig, BaseException):
            cause = error.orig  # what the driver (or a bind processor) raised
        sqlstate = getattr(cause, "sqlstate", None) or getattr(cause.__cause__, "sqlstate", None)
        valid = isinstance(sqlstate, str) and SQLSTATE.match(sqlstate)
        return cls(type(cause).__name__[:100], sqlstate if valid else None)

    def __str__(self) -> str:
        return self.error_type + (f", SQLSTATE {self.sqlstate}" if self.sqlstate else "")


class EventNotApplicableError(RuntimeError):
    """``projection`` cannot apply the event at ``position``. Raised without its cause, whose text
    may hold personal data."""

    def __init__(self, projection: str, position: int, error: ErrorSummary) -> None:
        super().__init__(f"{projection} cannot apply the event at position {position} ({error})")
        self.projection, self.position, self.error = projection, position, error

    @property
    def error_type(self) -> str:
        return self.error.error_type

    @property
    def sqlstate(self) -> str | None:
        return self.error.sqlstate


class ProjectionRunner:
    def __init__(
        self, projection: Projection, identity: Identity, engine: Engine, *, batch_size: int = DEFAULT_BATCH,
        feed: Feed | None = None,
    ):  # fmt: skip
        self.projection = projection
        self.identity = identity
        self.engine = engine
        self.batch_size = batch_size
        self.feed = feed or Feed(identity, decoded_topics([projection]))
        self.position: int | None = None  # where the last batch left the generation
        self._tables: dict[int, list] = {}
        self._held: Connection | None = None

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep one connection for every batch until the block ends (a follower's: no pool
        checkout, and no liveness ping, per batch); one that fails ends the block."""
        with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            self._held = conn
            try:
                yield
            finally:
                self._held = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A writing transaction, on the held connection if there is one."""
        if self._held is None:
            with writing(self.engine) as conn:
                yield conn
        else:
            with self._held.begin():
                yield self._held

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A reading transaction: on the held connection on PostgreSQL; on SQLite one of its own,
        since the held one begins IMMEDIATE (an idle poll would take the write lock)."""
        if self._held is None or self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                yield conn
        else:
            with self._held.begin():
                yield self._held

    def run_batch(self, generation: int, start: int | None = None) -> int:
        """Apply the next batch to ``generation`` from its position (``start`` when the caller
        has just read it); returns how many notifications it consumed (relevant or not: the
        position always moves past everything read). Raises ``EventNotApplicableError`` after
        applying every event before the one that fails."""
        if start is None:
            with self.reading() as conn:
                start = catalog.position(conn, self.projection.name, generation)
        self.position = start
        entries = self.feed.after(start, self.batch_size)
        if not entries:
            return 0
        try:
            events = [self._decode(e) for e in entries if e.topic in self.projection.topics]
            self._write(generation, start, entries[-1].position, events)
            applied = True
        except NOT_THE_EVENT:
            raise
        except Exception:  # some event of the batch: found below, outside this handler, so the
            applied = False  # error raised then does not carry this one (and its text) along
        if not applied:
            self._one_by_one(generation, start, entries)
        self.position = entries[-1].position
        return len(entries)

    def catch_up(self, generation: int, *, progress: Callable[[int], None] | None = None) -> int:
        """Apply batches until nothing is left; returns the number of notifications consumed."""
        total = 0
        while consumed := self.run_batch(generation):
            total += consumed
            if progress:
                progress(consumed)
        return total

    def _one_by_one(self, generation: int, start: int, entries: Sequence[Entry]) -> None:
        position, failure = start, None
        for entry in entries:
            if entry.topic not in self.projection.topics:
                continue
            try:
                self._write(generation, position, entry.position, [self._decode(entry)])
            except NOT_THE_EVENT:
                raise
            except Exception as error:
                failure = ErrorSummary.of(error)  # the error itself stays here, with its text
                break
            position = entry.position
        if failure is None:  # the batch failed, each of its events alone did not
            if position < entries[-1].position:
                self._write(generation, position, entries[-1].position, [])
            return
        before = max((e.position for e in entries if e.position < entry.position), default=start)
        if before > position:  # what lies between the last applied event and the culprit is done
            self._write(generation, position, before, [])
        self.position = before
        raise EventNotApplicableError(self.projection.name, entry.position, failure)

    def _decode(self, entry: Entry) -> Positioned:
        if self.projection.reads_stored:
            return Positioned(entry.position, entry.notification)
        return Positioned(entry.position, self.feed.decode(entry))

    def _write(self, generation: int, start: int, end: int, events: Sequence[Positioned]) -> None:
        with self.transaction() as conn:
            # The position first: it locks the tracking row, so a second leader (the first one's
            # lock lost within the last check) meets a conflict before writing any row.
            catalog.advance(conn, self.projection.name, generation, start, end)
            if events:
                self.projection.apply(conn, self._tables_of(generation), events)

    def _tables_of(self, generation: int) -> list:
        if generation not in self._tables:
            self._tables[generation] = catalog.tables_of(self.projection, generation)
        return self._tables[generation]
