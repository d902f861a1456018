"""The projection catalog: live and building generations, tracking positions, view switches.

Every batch advances its generation's position with a compare-and-set in the same transaction as
its rows, so two workers on one projection can never both apply an event.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex, CreateTable

from eventstore.database import writing
from projections.base import Projection

metadata = sa.MetaData()

generations = sa.Table(
    "projection_generations",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("live", sa.Integer(), nullable=False),
    sa.Column("live_shape", sa.Integer(), nullable=False),
    sa.Column("building", sa.Integer(), nullable=True),
    sa.Column("building_shape", sa.Integer(), nullable=True),
)

tracking = sa.Table(
    "projection_tracking",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer(), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


# The event a follower (a projection, or the audit sealer) cannot apply, one row per follower:
# written by the failing worker in its own short transaction, removed once it moves past it.
failures = sa.Table(
    "projection_failures",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("error_type", sa.String(100), nullable=False),
    sa.Column("sqlstate", sa.String(5), nullable=True),
    sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
)
# Followers without generations (the audit sealer) keep their tracking row at generation 0:
# when it last moved, so readiness can tell "behind and not moving" for them too.
NO_GENERATION = 0


# The statements of every batch, built once (SQLAlchemy then keys its compiled-statement cache
# without walking them again). An UPDATE's parameters must not be named as columns: SQLAlchemy
# would take them for values to SET.
_POSITION = sa.select(tracking.c.position).where(
    tracking.c.name == sa.bindparam("name"), tracking.c.generation == sa.bindparam("generation")
)
_LIVE_POSITION = (
    sa.select(generations.c.live, generations.c.live_shape, tracking.c.position)
    .join_from(
        generations,
        tracking,
        sa.and_(tracking.c.name == generations.c.name, tracking.c.generation == generations.c.live),
    )
    .where(generations.c.name == sa.bindparam("name"))
)
_ADVANCE = (
    tracking.update()
    .where(
        tracking.c.name == sa.bindparam("of_name"),
        tracking.c.generation == sa.bindparam("of_generation"),
        tracking.c.position == sa.bindparam("expected"),
    )
    .values(position=sa.bindparam("new"), updated_at=sa.bindparam("now"))
)


class TrackingConflictError(RuntimeError):
    """Another worker advanced this generation first; this batch was rolled back."""


def tables_of(projection: Projection, generation: int) -> list[sa.Table]:
    return projection.define_tables(sa.MetaData(), generation)


def ensure_live_generation(engine: Engine, projection: Projection) -> None:
    """Create generation 1 (tables, view, tracking at 0) if the projection has none yet."""
    with writing(engine) as conn:
        if conn.execute(sa.select(generations.c.name).where(generations.c.name == projection.name)).first():
            return
        _create_generation(conn, projection, 1)
        conn.execute(generations.insert().values(name=projection.name, live=1, live_shape=projection.shape))
        _point_view(conn, projection, 1)


def cache_relations(conn: Connection, projection: Projection) -> list[str]:
    """The tables and views of the projection's live and building generations (``db init`` hands
    them to the runtime role, which drops and creates them in rebuilds)."""
    row = conn.execute(sa.select(generations).where(generations.c.name == projection.name)).first()
    if row is None:
        return []
    names: list[str] = []
    for generation in {row.live, row.building} - {None}:
        for table in tables_of(projection, generation):
            names += [table.name, table.name.removesuffix(f"_g{generation}")]
    return names


def live_generation(conn: Connection, name: str) -> tuple[int, int]:
    row = conn.execute(
        sa.select(generations.c.live, generations.c.live_shape).where(generations.c.name == name)
    ).one()
    return row.live, row.live_shape


def building_generation(conn: Connection, name: str) -> int | None:
    return conn.execute(
        sa.select(generations.c.building).where(generations.c.name == name)
    ).scalar_one_or_none()


def position(conn: Connection, name: str, generation: int) -> int:
    return conn.execute(_POSITION, {"name": name, "generation": generation}).scalar_one()


def live_position(conn: Connection, name: str) -> tuple[int, int, int]:
    """The live generation, its shape and its position, in one round trip (every live step)."""
    row = conn.execute(_LIVE_POSITION, {"name": name}).one()
    return row.live, row.live_shape, row.position


def advance(conn: Connection, name: str, generation: int, expected: int, new: int) -> None:
    """Move the position from ``expected`` to ``new``, or fail if someone else moved it."""
    where = {"of_name": name, "of_generation": generation, "expected": expected}
    moved = conn.execute(_ADVANCE, {**where, "new": new, "now": datetime.now(UTC)}).rowcount
    if moved != 1:
        raise TrackingConflictError(f"{name} generation {generation} is no longer at {expected}")


def note_progress(engine: Engine, name: str, position: int) -> None:
    """Record that a follower without generations reached ``position`` now."""
    now = datetime.now(UTC)
    with writing(engine) as conn:
        moved = conn.execute(
            tracking.update()
            .where(tracking.c.name == name, tracking.c.generation == NO_GENERATION)
            .values(position=position, updated_at=now)
        ).rowcount
        if not moved:
            conn.execute(
                tracking.insert().values(
                    name=name, generation=NO_GENERATION, position=position, updated_at=now
                )
            )


def moved_at(conn: Connection, name: str, generation: int) -> datetime | None:
    """When this generation's position last changed (None if it never did)."""
    moved = conn.execute(
        sa.select(tracking.c.updated_at).where(tracking.c.name == name, tracking.c.generation == generation)
    ).scalar_one_or_none()
    return None if moved is None else as_utc(moved)


def record_failure(engine: Engine, name: str, position: int, error_type: str, sqlstate: str | None) -> int:
    """Count one more failed attempt at ``position`` (a new position starts over); returns the
    attempts so far."""
    now = datetime.now(UTC)
    with writing(engine) as conn:
        row = conn.execute(sa.select(failures).where(failures.c.name == name)).first()
        if row is not None and row.position == position:
            attempts = row.attempts + 1
            conn.execute(
                failures.update()
                .where(failures.c.name == name)
                .values(error_type=error_type, sqlstate=sqlstate, last_attempt_at=now, attempts=attempts)
            )
            return int(attempts)
        conn.execute(failures.delete().where(failures.c.name == name))
        conn.execute(
            failures.insert().values(
                name=name,
                position=position,
                error_type=error_type,
                sqlstate=sqlstate,
                first_failed_at=now,
                last_attempt_at=now,
                attempts=1,
            )
        )
        return 1


def clear_failure(engine: Engine, name: str, reached: int) -> None:
    """Forget a failure the follower has moved past (``reached`` is where it stands now)."""
    with writing(engine) as conn:
        conn.execute(failures.delete().where(failures.c.name == name, failures.c.position <= reached))


def failures_by_name(conn: Connection) -> dict[str, sa.Row]:
    return {row.name: row for row in conn.execute(sa.select(failures))}


def as_utc(moment: datetime) -> datetime:
    """A stored moment in UTC: SQLite hands back naive datetimes, and every moment in these
    tables was written in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def begin_rebuild(engine: Engine, projection: Projection) -> int:
    """The generation a rebuild fills: an interrupted one is resumed, else a new one is made,
    without its secondary indexes (``complete_generation`` builds them once it has caught up)."""
    with writing(engine) as conn:
        row = conn.execute(sa.select(generations).where(generations.c.name == projection.name)).one()
        if row.building is not None and row.building_shape == projection.shape:
            return int(row.building)
        if row.building is not None:  # built for another shape: start over
            _drop_generation(conn, projection, row.building)
        generation = max(row.live, row.building or 0) + 1
        _create_generation(conn, projection, generation, deferring_indexes=True)
        conn.execute(
            generations.update()
            .where(generations.c.name == projection.name)
            .values(building=generation, building_shape=projection.shape)
        )
        return generation


def complete_generation(engine: Engine, projection: Projection, generation: int) -> None:
    """Build the indexes ``begin_rebuild`` left out (those already there are kept, so a resumed
    rebuild ends with all of them): one bulk sort each instead of one insertion per row. One
    transaction per index, so a SQLite writer waits for one index at most."""
    for index in deferred_indexes(projection, generation):
        with writing(engine) as conn:
            conn.execute(CreateIndex(index, if_not_exists=True))


def deferred_indexes(projection: Projection, generation: int) -> list[sa.Index]:
    """The indexes a building generation goes without: neither upserts nor uniqueness need them."""
    tables = tables_of(projection, generation)
    return [index for table in tables for index in table.indexes if not index.unique]


def switch_to(engine: Engine, projection: Projection, generation: int) -> int:
    """Make ``generation`` live in one transaction (view and catalog), then drop the old one.
    It builds no index: complete a rebuilt generation first (``complete_generation``)."""
    with writing(engine) as conn:
        old, _ = live_generation(conn, projection.name)
        _point_view(conn, projection, generation)
        conn.execute(
            generations.update()
            .where(generations.c.name == projection.name)
            .values(live=generation, live_shape=projection.shape, building=None, building_shape=None)
        )
    with writing(engine) as conn:  # waits for readers still inside the old tables
        _drop_generation(conn, projection, old)
    return old


def _create_generation(
    conn: Connection, projection: Projection, generation: int, *, deferring_indexes: bool = False
) -> None:
    for table in tables_of(projection, generation):
        conn.execute(CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            if index.unique or not deferring_indexes:
                conn.execute(CreateIndex(index, if_not_exists=True))
    conn.execute(
        tracking.insert().values(
            name=projection.name, generation=generation, position=0, updated_at=datetime.now(UTC)
        )
    )


def _drop_generation(conn: Connection, projection: Projection, generation: int) -> None:
    for table in reversed(tables_of(projection, generation)):
        table.drop(conn, checkfirst=True)
    conn.execute(
        tracking.delete().where(tracking.c.name == projection.name, tracking.c.generation == generation)
    )


def _point_view(conn: Connection, projection: Projection, generation: int) -> None:
    """One view per table, named as the table without its generation (``audit_log_g3`` is shown
    as ``audit_log``; the first table's view is the projection's name)."""
    for table in tables_of(projection, generation):
        view = table.name.removesuffix(f"_g{generation}")
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {view}")
        conn.exec_driver_sql(f"CREATE VIEW {view} AS SELECT * FROM {table.name}")
