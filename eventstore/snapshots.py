"""Snapshots are caches, never evidence: each one is stored with a MAC under a key the database
does not hold (derived from the secret key), and one that fails it is not used.

A snapshot's stored state is ``MAGIC || HMAC-SHA256(key, identity || state) || state``, where
``identity`` is the originator id, version and topic (length-prefixed), so a genuine snapshot can
be neither edited nor moved to another aggregate or version. On load a snapshot without a valid
MAC is dropped and logged (aggregate id and version only): the aggregate is replayed from its
events, which are the evidence. Snapshots written before MACs existed carry none and are treated
the same way: replayed, which is safe and only slower until the next snapshot is taken.

``verify_snapshots`` recomputes every stored snapshot from its events and reports each one
that differs from them or carries a wrong MAC (``ledgerline audit verify``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    AggregateRecorder,
    EventStore,
    Mapper,
    Recording,
    StoredEvent,
)
from sqlalchemy.engine import Engine

from eventstore.database import Database

logger = logging.getLogger(__name__)

MAGIC = b"LLS1"
MAC_SIZE = 32


def snapshot_mac(key: bytes, stored: StoredEvent, state: bytes) -> bytes:
    message = b"".join(
        len(part).to_bytes(4, "big") + part
        for part in (
            UUID(str(stored.originator_id)).bytes,  # SQLite hands ids back as hex text
            int(stored.originator_version).to_bytes(8, "big"),
            stored.topic.encode(),
            state,
        )
    )
    return hmac.new(key, b"ledgerline-snapshot\x00" + message, hashlib.sha256).digest()


def seal(key: bytes, stored: StoredEvent) -> StoredEvent:
    return replace(stored, state=MAGIC + snapshot_mac(key, stored, stored.state) + stored.state)


def opened(key: bytes, stored: StoredEvent) -> bytes | None:
    """The state the MAC vouches for, or ``None`` (no MAC, or a wrong one)."""
    if not stored.state.startswith(MAGIC):
        return None
    mac, state = stored.state[len(MAGIC) : len(MAGIC) + MAC_SIZE], stored.state[len(MAGIC) + MAC_SIZE :]
    return state if hmac.compare_digest(mac, snapshot_mac(key, stored, state)) else None


class AuthenticatedSnapshots(EventStore[UUID]):
    """The snapshot store: writes snapshots with their MAC; reads only those whose MAC holds."""

    def __init__(self, mapper: Mapper[UUID], recorder: AggregateRecorder, key: bytes) -> None:
        super().__init__(mapper, recorder)
        self._key = key

    def put(self, domain_events: Sequence[DomainEventProtocol[UUID]], **kwargs: Any) -> list[Recording[UUID]]:
        stored = [seal(self._key, self.mapper.to_stored_event(event)) for event in domain_events]
        self.recorder.insert_events(stored, **kwargs)
        return []  # snapshots are not notifications: the library ignores what this returns

    def get(
        self,
        originator_id: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[DomainEventProtocol[UUID]]:
        remaining = limit
        while True:  # with a limit, read on past rejected snapshots: they hide no genuine one
            requested = remaining
            page = self.recorder.select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=requested)
            for stored in page:
                state = self._verified_state(stored)
                if state is not None:
                    yield self.mapper.to_domain_event(replace(stored, state=state))
                    remaining = None if remaining is None else remaining - 1
            if remaining is None or remaining == 0 or requested is None or len(page) < requested:
                return
            if desc:
                lte = page[-1].originator_version - 1
            else:
                gt = page[-1].originator_version

    def _verified_state(self, stored: StoredEvent) -> bytes | None:
        state = opened(self._key, stored)
        if state is None:
            logger.warning(
                "snapshot of %s at version %s ignored (no valid MAC): replaying its events",
                stored.originator_id,
                stored.originator_version,
            )
        return state


@dataclass(frozen=True)
class SnapshotProblem:
    aggregate_id: str
    version: int
    reason: str


@dataclass
class SnapshotReport:
    verified: int = 0
    unauthenticated: int = 0  # written before MACs, and equal to their events' state
    forged: list[SnapshotProblem] = field(default_factory=list)


def verify_snapshots(
    app: Application[UUID], engine: Engine, database: Database, key: bytes
) -> SnapshotReport:
    """Every stored snapshot against the state its events give at that version, and its MAC.
    Problems name the aggregate and version only (a snapshot holds personal data)."""
    report = SnapshotReport()
    for stored in _stored_snapshots(engine, database):
        reason = _problem(app, key, stored)
        if reason == "no MAC":
            report.unauthenticated += 1
        elif reason is not None:
            aggregate_id = str(stored.originator_id)
            report.forged.append(SnapshotProblem(aggregate_id, stored.originator_version, reason))
        report.verified += 1
    return report


def _problem(app: Application[UUID], key: bytes, stored: StoredEvent) -> str | None:
    state = opened(key, stored)
    if state is None and stored.state.startswith(MAGIC):
        return "its MAC does not match (written without the secret key)"
    try:
        snapshot = app.mapper.to_domain_event(replace(stored, state=state or stored.state))
        cached = _comparable(snapshot.mutate(None))  # type: ignore[attr-defined]
    except Exception:
        return "it does not decode"
    replayed = None
    for event in app.events.get(stored.originator_id, lte=stored.originator_version):  # type: ignore[arg-type]
        replayed = event.mutate(replayed)  # type: ignore[attr-defined]
    if replayed is None or _comparable(replayed) != cached:
        return "it differs from the state its events give at that version"
    return "no MAC" if state is None else None


def _comparable(aggregate: object) -> dict[str, Any]:
    state = dict(vars(aggregate))
    state.pop("_pending_events", None)
    return state


def _stored_snapshots(engine: Engine, database: Database, batch: int = 500) -> Iterator[StoredEvent]:
    """Every stored snapshot, in (id, version) order, a batch per short read transaction."""
    table = sa.table(
        database.snapshots_table,
        sa.column("originator_id"),
        sa.column("originator_version"),
        sa.column("topic"),
        sa.column("state"),
    )
    key = sa.tuple_(table.c.originator_id, table.c.originator_version)
    after: tuple[Any, int] | None = None
    while True:
        query = sa.select(table).order_by(table.c.originator_id, table.c.originator_version).limit(batch)
        with engine.connect() as conn:
            rows = conn.execute(
                query if after is None else query.where(key > sa.tuple_(*map(sa.literal, after)))
            ).all()
        for row in rows:
            yield StoredEvent(
                originator_id=UUID(str(row.originator_id)),
                originator_version=int(row.originator_version),
                topic=row.topic,
                state=bytes(row.state),
            )
        if len(rows) < batch:
            return
        after = (rows[-1].originator_id, rows[-1].originator_version)
