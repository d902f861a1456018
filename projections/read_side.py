"""What the read side tells its users: how far each projection got, and waiting for a position."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from eventstore.audit_chain.sealer import sealed_head
from eventstore.identity import Identity
from projections import catalog


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

    @property
    def state(self) -> str:
        if self.building is not None:
            return "rebuilding"
        return "caught-up" if self.lag_events == 0 else "catching-up"


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


def status(engine: Engine, identity: Identity) -> list[ProjectionStatus]:
    head = identity.head_position()
    statuses = []
    with engine.connect() as conn:
        for row in conn.execute(sa.select(catalog.generations).order_by(catalog.generations.c.name)):
            position = catalog.position(conn, row.name, row.live)
            building_position = (
                None if row.building is None else catalog.position(conn, row.name, row.building)
            )
            statuses.append(
                ProjectionStatus(
                    name=row.name,
                    generation=row.live,
                    shape=row.live_shape,
                    position=position,
                    head=head,
                    lag_events=max(0, head - position),
                    lag_seconds=_lag_seconds(identity, position, head),
                    building=row.building,
                    building_position=building_position,
                )
            )
    return statuses


def chain_status(engine: Engine, identity: Identity) -> ProjectionStatus:
    """How far the audit chain's sealer got, in the same terms as a projection's."""
    head = identity.head_position()
    with engine.connect() as conn:
        position = sealed_head(conn).position
    lag = max(0, head - position)
    return ProjectionStatus(
        "audit_chain", 0, 0, position, head, lag, _lag_seconds(identity, position, head), None, None
    )


def _lag_seconds(identity: Identity, position: int, head: int) -> float:
    """How old the oldest event not yet applied is (0 when caught up)."""
    if position >= head:
        return 0.0
    pending = identity.recorder.select_notifications(position, 1, inclusive_of_start=False)
    if not pending:
        return 0.0
    oldest: datetime = getattr(identity.mapper.to_domain_event(pending[0]), "timestamp")  # noqa: B009
    return max(0.0, (datetime.now(UTC) - oldest).total_seconds())
