"""Group commit for the PostgreSQL event store: concurrent saves from the threads of one process
share one transaction, one table lock, one NOTIFY and one commit.

The library's recorder takes ``LOCK TABLE ... IN EXCLUSIVE MODE`` in each save's own transaction,
so saves from many threads queue for the lock and commit one after another. Here the first save
to arrive leads: it takes every save waiting at that moment (itself included) and writes them in
one transaction; saves that arrive meanwhile queue for the next group, and the leader hands over
to the first of them when its group is done. Nobody waits for a group to fill: a lone save is
written at once.

What each save keeps:
- gap safety: the table lock is taken before the first position is drawn and held until the
  commit, so positions are still committed in position order;
- its own outcome: a save whose events would fail (a version conflict, a reservation already
  taken) gets its own ``IntegrityError`` while the others commit (see below);
- atomicity: its events are in one INSERT, inside a savepoint, all in or all out;
- its own positions: its events' share of the ids the group's INSERT returned, in order;
- its leaves: after the last save and before the COMMIT, still under the lock, the log's Merkle
  tree is extended over every event the group wrote (``eventstore.audit_chain.tree``), so an
  event and its leaf commit together.
A failure of the transaction itself (lock timeout, lost connection, failed commit) is retried like
the library retries one save, and then becomes every member's error.

The group's events go in one INSERT, in a savepoint: one round trip for the whole group, and
the tree's nodes travel with the COMMIT. Only if it fails (a version conflict, a reservation
already taken) is it rolled back and each save written in a savepoint of its own, synced before
the next one is sent, so that a failure is only its own save's. What a group saves is the
per-save transaction: BEGIN, lock, NOTIFY and COMMIT with its WAL flush, and the queue of
backends waiting for the table lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Identifier

from eventstore.audit_chain.records import StoredRecord
from eventstore.audit_chain.tree import TreeAppender

MAX_GROUP_EVENTS = 500  # keep one transaction's INSERTs to hundreds of events
MAX_GROUP_SAVES = 64  # one subtransaction each: PostgreSQL caches 64 per transaction
_SAVEPOINT = "SAVEPOINT ledgerline_save"
_ROLLBACK = "ROLLBACK TO SAVEPOINT ledgerline_save"

# psycopg's errors as the library's recorder translates them (``PostgresDatastore.get_connection``).
_TRANSLATIONS: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.InterfaceError, InterfaceError),
    (psycopg.OperationalError, OperationalError),
    (psycopg.DataError, DataError),
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.InternalError, InternalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.DatabaseError, DatabaseError),
    (psycopg.Error, PersistenceError),
)


class _Save:
    """One caller's ``insert_events``: its events, then its notification ids or its error."""

    __slots__ = ("done", "error", "events", "ids", "leads")

    def __init__(self, events: Sequence[StoredEvent]) -> None:
        self.events = events
        self.done = threading.Event()  # set when the outcome is in, or when this save must lead
        self.leads = False
        self.ids: Sequence[int] | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Sequence[int]:
        if self.error is not None:
            raise self.error
        if self.ids is None:
            raise PersistenceError("the group commit stopped before this save was written")
        return self.ids


class GroupCommitRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` whose ``insert_events`` joins concurrent callers into one
    transaction and extends the log's Merkle tree in it. There is no other way in: the library's
    tracking records and database-function mode would commit events outside the tree."""

    max_group_saves = MAX_GROUP_SAVES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.datastore.enable_db_functions:
            raise NotSupportedError("POSTGRES_ENABLE_DB_FUNCTIONS would commit events outside the tree")
        # The library's statements, rendered once: psycopg would walk each composed one again
        # on every execution.
        self.insert_events_statement = _rendered(self.insert_events_statement)
        self.lock_table_statements = [_rendered(statement) for statement in self.lock_table_statements]
        self._notify = _rendered(SQL("NOTIFY {0}").format(Identifier(self.channel_name)))
        self._queue: deque[_Save] = deque()
        self._queue_lock = threading.Lock()
        self._leading = False  # a leader is writing; new saves queue for the next group
        self._in_group = threading.local()
        self.tree = TreeAppender("%s")
        self.abandoned_events = 0  # of groups written one save at a time after all in one failed

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if kwargs.get("tracking") is not None:
            raise NotSupportedError("events with a tracking record would commit outside the tree")
        if not stored_events:
            return []
        save = _Save(stored_events)
        with self._queue_lock:
            self._queue.append(save)
            if not self._leading:
                self._leading = save.leads = True
        if not save.leads:
            try:
                save.done.wait()  # the outcome, or the lead handed over by the previous leader
            except BaseException:  # interrupted: never leave the queue waiting for this thread
                self._withdraw(save)
                raise
        if save.leads:
            self._lead()
        return save.outcome()

    def _lead(self) -> None:
        with self._queue_lock:  # this save is first in the queue: it was first in, or handed the lead
            group = [self._queue.popleft()]
            events = len(group[0].events)
            while (
                self._queue
                and len(group) < self.max_group_saves
                and events + len(self._queue[0].events) <= MAX_GROUP_EVENTS
            ):
                events += len(self._queue[0].events)
                group.append(self._queue.popleft())
        try:
            self._write_group(group)
        except Exception as error:  # the transaction failed as a whole: nobody's events are in
            for save in group:
                save.ids, save.error = None, _copy(error)
        finally:
            for save in group:
                if save.error is None and save.ids is None:
                    save.error = PersistenceError("the group commit was interrupted")
                save.done.set()
            with self._queue_lock:
                self._hand_over()

    def _withdraw(self, save: _Save) -> None:
        with self._queue_lock:
            if save not in self._queue:
                return  # a leader has taken it: it is written (or not) without its caller
            was_handed_the_lead = self._queue[0] is save and save.leads
            self._queue.remove(save)
            if was_handed_the_lead:
                self._hand_over()

    def _hand_over(self) -> None:
        """With the queue lock held: wake the next leader, or let the next save lead."""
        if self._queue:
            self._queue[0].leads = True
            self._queue[0].done.set()
        else:
            self._leading = False

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _write_group(self, group: list[_Save]) -> None:
        for save in group:
            save.ids = save.error = None
        with self.datastore.get_connection() as conn, conn.pipeline() as pipeline:
            # BEGIN is queued like the other statements (psycopg's transaction() would wait for a
            # round trip of its own), and the COMMIT travels with the tree's nodes.
            header, sizing, savepoints, curs, ending = (conn.cursor() for _ in range(5))
            # Nothing is prepared during a group: a statement queued behind a failed one is
            # skipped by the server, and psycopg could take it for prepared.
            prepare_threshold, conn.prepare_threshold = conn.prepare_threshold, None
            self._in_group.active = True
            try:
                header.execute("BEGIN")
                self._lock_table(header)  # once for the group, before any position is drawn
                self._notify_channel(header)
                self.tree.ask_border(sizing)  # the tree cannot grow while the lock is held
                if not _distinct(group) or not self._write_together(
                    pipeline, header, savepoints, curs, group
                ):
                    for save in group:
                        self._write_member(pipeline, header, savepoints, curs, save)
                self.tree.extend(ending, self.tree.asked_border(sizing), _records(group))
                ending.execute("COMMIT")
                pipeline.sync()
            except BaseException:
                _abandon(pipeline, header)
                raise
            finally:
                self._in_group.active = False
                conn.prepare_threshold = prepare_threshold

    def _write_together(
        self,
        pipeline: psycopg.Pipeline,
        header: Cursor[DictRow],
        savepoints: Cursor[DictRow],
        curs: Cursor[DictRow],
        group: list[_Save],
    ) -> bool:
        """Every save's events in one INSERT (one round trip for the group), in a savepoint; if
        any of them fails, it is rolled back and False says: write them one by one, so that
        only the saves that fail get an error."""
        events = [event for save in group for event in save.events]
        self._in_group.together = True
        try:
            savepoints.execute(_SAVEPOINT)
            self._insert_stored_events(curs, events)
            pipeline.sync()
            ids = self._fetch_ids_after_insert_events(curs, events)
        except Exception as error:
            with contextlib.suppress(psycopg.Error):
                pipeline.sync()
            if header.statusmessage != "NOTIFY" or isinstance(
                error, psycopg.OperationalError | psycopg.InterfaceError
            ):
                raise
            self.abandoned_events += len(events)
            savepoints.execute(_ROLLBACK)
            pipeline.sync()
            return False
        finally:
            self._in_group.together = False
        assert ids is not None and len(ids) == len(events)
        start = 0
        for save in group:
            save.ids, start = ids[start : start + len(save.events)], start + len(save.events)
        return True

    def _write_member(
        self,
        pipeline: psycopg.Pipeline,
        header: Cursor[DictRow],
        savepoints: Cursor[DictRow],
        curs: Cursor[DictRow],
        save: _Save,
    ) -> None:
        """One save in its own savepoint, synced before the next one is sent, so that any error
        is its own."""
        try:
            savepoints.execute(_SAVEPOINT)
            self._insert_stored_events(curs, save.events)
            pipeline.sync()
            save.ids = self._fetch_ids_after_insert_events(curs, save.events)
        except Exception as error:
            with contextlib.suppress(psycopg.Error):
                pipeline.sync()  # leave the pipeline's aborted state
            if header.statusmessage != "NOTIFY" or isinstance(  # no lock: nothing was written
                error, psycopg.OperationalError | psycopg.InterfaceError
            ):
                raise  # the whole group's problem
            savepoints.execute(_ROLLBACK)  # this save's events are gone, the earlier ones stay
            pipeline.sync()
            save.ids, save.error = None, _translate(error)

    def _notify_channel(self, curs: Cursor[DictRow]) -> None:
        curs.execute(self._notify)

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        if getattr(self._in_group, "active", False):  # the group holds the lock and has notified
            PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events, **kwargs)
        else:
            super()._insert_stored_events(curs, stored_events, **kwargs)


class OneSaveRecorder(GroupCommitRecorder):
    """Group commit off (``LEDGERLINE_GROUP_COMMIT=false``): each save is a group of its own,
    its events and their leaves still one transaction."""

    max_group_saves = 1


def _distinct(group: list[_Save]) -> bool:
    """Several saves, none of the same (aggregate, version) as another: worth one INSERT (two
    saves of one version would make it fail, and each then be written on its own)."""
    keys = [(event.originator_id, event.originator_version) for save in group for event in save.events]
    return len(group) > 1 and len(set(keys)) == len(keys)


def _rendered(statement: Any) -> Any:
    return statement.as_bytes(None) if isinstance(statement, Composable) else statement


def _records(group: list[_Save]) -> list[StoredRecord]:
    """The events the group wrote, as the tree's records (positions ascending)."""
    records = [
        StoredRecord(position, _uuid(event), event.originator_version, event.topic, event.state)
        for save in group
        if save.ids is not None
        for position, event in zip(save.ids, save.events, strict=True)
    ]
    return sorted(records, key=lambda record: record.position)


def _uuid(event: StoredEvent) -> bytes:
    """As a ``uuid`` column stores it: 16 bytes."""
    originator_id = event.originator_id
    return (originator_id if isinstance(originator_id, UUID) else UUID(originator_id)).bytes


def _abandon(pipeline: psycopg.Pipeline, curs: Cursor[DictRow]) -> None:
    """Roll the group's transaction back, if the connection still allows it (the pool
    discards a broken one)."""
    for step in (pipeline.sync, lambda: curs.execute("ROLLBACK"), pipeline.sync):
        with contextlib.suppress(psycopg.Error):
            step()


def _translate(error: Exception) -> Exception:
    for psycopg_type, ours in _TRANSLATIONS:
        if isinstance(error, psycopg_type):
            translated = ours(str(error))
            translated.__cause__ = error
            return translated
    return error


def _copy(error: Exception) -> Exception:
    """An exception of the same type per member: one instance raised in many threads would
    collect all their tracebacks."""
    try:
        copy = type(error)(*error.args)
    except Exception:
        return error
    copy.__cause__ = error
    return copy
