"""What the read side tells its users: how far each projection got, and waiting for a position."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from eventstore.audit_chain.checkpoints import Checkpointer, latest_checkpoint
from eventstore.audit_chain.tree import stored_size
from eventstore.identity import Identity
from projections import catalog
from projections.runner import NOT_THE_EVENT

DEFAULT_STALL_SECONDS = 30.0


@dataclass(frozen=True)
class Failure:
    """The event a follower cannot apply, as recorded by its worker."""

    position: int
    error_type: str
    sqlstate: str | None
    attempts: int
    first_failed_at: datetime
    last_attempt_at: datetime


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    generation: int
    shape: int
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    building: int | None
    building_position: int | None
    failure: Failure | None = None  # the event it cannot apply, if any
    stalled: bool = False  # behind, and not moving for the stall window

    @property
    def state(self) -> str:
        if self.failure is not None:
            return "failing"
        if self.stalled:
            return "stalled"
        if self.building is not None:
            return "rebuilding"
        return "caught-up" if self.lag_events == 0 else "catching-up"

    def problem(self, max_lag: int) -> str | None:
        """Why this follower makes the service not ready (None: it does not)."""
        if self.failure is not None:
            return "failing"
        if self.stalled:
            return "stalled"
        return "lagging" if self.lag_events > max_lag else None


def positions(engine: Engine) -> dict[str, int]:
    """The live generation's position of every projection."""
    joined = sa.select(catalog.tracking.c.name, catalog.tracking.c.position).join(
        catalog.generations,
        sa.and_(
            catalog.generations.c.name == catalog.tracking.c.name,
            catalog.generations.c.live == catalog.tracking.c.generation,
        ),
    )
    with engine.connect() as conn:
        return {row.name: row.position for row in conn.execute(joined)}


def wait_for_position(engine: Engine, position: int, *, timeout: float, names: tuple[str, ...] = ()) -> bool:
    """Wait until every (named) projection has applied everything up to ``position``."""
    deadline = time.monotonic() + timeout
    while True:
        reached = positions(engine)
        relevant = [reached[name] for name in names] if names else list(reached.values())
        if relevant and min(relevant) >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def status(
    engine: Engine, identity: Identity, *, stall_seconds: float = DEFAULT_STALL_SECONDS
) -> list[ProjectionStatus]:
    head = identity.head_position()
    statuses = []
    with engine.connect() as conn:
        failures = catalog.failures_by_name(conn)
        for row in conn.execute(sa.select(catalog.generations).order_by(catalog.generations.c.name)):
            position = catalog.position(conn, row.name, row.live)
            building_position = (
                None if row.building is None else catalog.position(conn, row.name, row.building)
            )
            progress = _progress(
                identity,
                position,
                head,
                catalog.moved_at(conn, row.name, row.live),
                failures.get(row.name),
                stall_seconds,
            )
            statuses.append(
                ProjectionStatus(
                    row.name,
                    row.live,
                    row.live_shape,
                    position,
                    head,
                    building=row.building,
                    building_position=building_position,
                    **progress,
                )
            )
    return statuses


def chain_status(
    engine: Engine,
    identity: Identity,
    *,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    interval: float = 1.0,
) -> ProjectionStatus:
    """How far the signed checkpoints got, in the same terms as a projection's (every event is
    in the tree from its commit; a checkpoint signs the tree at most every ``interval`` seconds,
    ``LEDGERLINE_CHECKPOINT_SECONDS``). The stall window counts from when the next checkpoint is
    due, not from the last one: waiting out the interval is not a stall."""
    name = Checkpointer.name
    head = identity.head_position()
    with engine.connect() as conn:
        latest = latest_checkpoint(conn, upto=stored_size(conn))  # rows past the tree: not evidence
        position = 0 if latest is None else latest.size
        due_at = None if latest is None else latest.signed_at + timedelta(seconds=interval)
        failure = catalog.failures_by_name(conn).get(name)
    progress = _progress(identity, position, head, due_at, failure, stall_seconds)
    return ProjectionStatus(name, 0, 0, position, head, building=None, building_position=None, **progress)


def _progress(
    identity: Identity,
    position: int,
    head: int,
    moved_at: datetime | None,
    failure: sa.Row | None,
    stall_seconds: float,
) -> dict[str, Any]:
    """Lag, failure and stall of a follower at ``position``. Stalled means behind and not moving
    for ``stall_seconds``: not since its position last changed, nor since the oldest event it has
    yet to apply was written (a follower idle at the head for an hour is not stalled the moment
    a new event arrives). A recorded failure counts while the follower is still before it."""
    lag = max(0, head - position)
    pending_age = _pending_age(identity, position, head)
    since_moved = (datetime.now(UTC) - moved_at).total_seconds() if moved_at else math.inf
    not_moving_for = since_moved if pending_age is None else min(since_moved, pending_age)
    if pending_age is None:  # unknown: how long it has stood still is the best estimate
        pending_age = max(0.0, since_moved) if math.isfinite(since_moved) else 0.0
    return {
        "lag_events": lag,
        "lag_seconds": pending_age,
        "failure": _failure(failure) if failure is not None and failure.position > position else None,
        "stalled": lag > 0 and not_moving_for >= stall_seconds,
    }


def _failure(row: sa.Row) -> Failure:
    return Failure(
        row.position,
        row.error_type,
        row.sqlstate,
        row.attempts,
        catalog.as_utc(row.first_failed_at),
        catalog.as_utc(row.last_attempt_at),
    )


def _pending_age(identity: Identity, position: int, head: int) -> float | None:
    """How old the oldest event not yet applied is (0 when caught up; None when it cannot be
    read: a follower may be stuck on exactly that event)."""
    if position >= head:
        return 0.0
    try:
        pending = identity.recorder.select_notifications(position, 1, inclusive_of_start=False)
        if not pending:
            return 0.0
        oldest: datetime = getattr(identity.mapper.to_domain_event(pending[0]), "timestamp")  # noqa: B009
    except NOT_THE_EVENT:
        raise
    except Exception:  # an event that cannot be decoded: its age is unknown, not zero
        return None
    return max(0.0, (datetime.now(UTC) - oldest).total_seconds())
