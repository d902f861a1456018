"""Blue-green rebuild: fill a new generation from position 0 while the live one serves, then
switch the view to it in one transaction and drop the old generation. Interrupted rebuilds resume
where they stopped (their position is tracked like any other).

Filled like a bulk loader: the new tables have no secondary indexes while they catch up (each
row would otherwise update every index on its way in); the indexes are built once it has caught
up, in one sort each, before the switch. Not UNLOGGED on PostgreSQL: measured on a 100k-event log,
filling it was no faster (the rebuild is bound by decoding, not by the WAL) and ``SET LOGGED``
then rewrote the table, so a rebuild took longer, and a crash would have emptied the table."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from eventstore.identity import Identity
from projections import catalog
from projections.base import Projection
from projections.runner import ProjectionRunner


def rebuild(
    projection: Projection,
    identity: Identity,
    engine: Engine,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 2000,
) -> int:
    """Rebuild ``projection``; returns the new live generation. ``progress(done, head)``."""
    generation = catalog.begin_rebuild(engine, projection)
    runner = ProjectionRunner(projection, identity, engine, batch_size=batch_size)
    with engine.connect() as conn:
        done = catalog.position(conn, projection.name, generation)

    def report(consumed: int) -> None:
        nonlocal done
        done += consumed
        if progress:
            progress(done, identity.head_position())

    while runner.catch_up(generation, progress=report):
        pass  # catch up again: events kept arriving while the last pass ran
    catalog.complete_generation(engine, projection, generation)
    while runner.catch_up(generation, progress=report):
        pass  # what arrived while the indexes were built, so the switch does not set readers back
    catalog.switch_to(engine, projection, generation)
    return generation
