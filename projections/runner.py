"""One projection's batch step: read the notifications after a generation's position, decode the
ones it cares about, write their effect and the new position in one transaction."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from eventstore.database import writing
from eventstore.identity import Identity
from projections import catalog
from projections.base import Positioned, Projection

DEFAULT_BATCH = 500


class ProjectionRunner:
    def __init__(
        self, projection: Projection, identity: Identity, engine: Engine, *, batch_size: int = DEFAULT_BATCH
    ):
        self.projection = projection
        self.identity = identity
        self.engine = engine
        self.batch_size = batch_size
        self._tables: dict[int, list] = {}

    def run_batch(self, generation: int) -> int:
        """Apply the next batch to ``generation``; returns how many notifications it consumed
        (relevant or not: the position always moves past everything read)."""
        with self.engine.connect() as conn:
            start = catalog.position(conn, self.projection.name, generation)
        notifications = self.identity.recorder.select_notifications(
            start, self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        topics, decode = self.projection.topics, self.identity.mapper.to_domain_event
        events = [Positioned(n.id, decode(n)) for n in notifications if n.topic in topics]
        with writing(self.engine) as conn:
            self.projection.apply(conn, self._tables_of(generation), events)
            catalog.advance(conn, self.projection.name, generation, start, notifications[-1].id)
        return len(notifications)

    def catch_up(self, generation: int, *, progress: Callable[[int], None] | None = None) -> int:
        """Apply batches until nothing is left; returns the number of notifications consumed."""
        total = 0
        while consumed := self.run_batch(generation):
            total += consumed
            if progress:
                progress(consumed)
        return total

    def _tables_of(self, generation: int) -> list:
        if generation not in self._tables:
            self._tables[generation] = catalog.tables_of(self.projection, generation)
        return self._tables[generation]
