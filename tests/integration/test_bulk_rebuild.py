"""Rebuilds fill the new generation like a bulk loader: no secondary index while it catches up,
every index built before the switch, also when an interrupted rebuild resumes."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex

from ledgerline.bootstrap import Components
from projections import catalog
from projections.base import Projection
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from tests.integration.helpers import register

SEALED = {"ip_address", "user_agent", "changes", "mac", "last_used_ip", "last_login_ip"}  # sealed anew


class Interrupted(Exception):
    """The operator's process dies in the middle of a rebuild."""


def with_history(components: Components, users: int = 12) -> None:
    identity = components.identity
    for n in range(users):
        user = register(identity, f"user{n}")
        identity.issue_api_key(user.id, name=f"key{n}", permissions={"users:read": True})
        identity.update_user(user.id, full_name=f"Renamed {n}")
    for projection in components.projections.values():
        ProjectionRunner(projection, identity, components.engine).catch_up(1)


def indexes_defined(projection: Projection, generation: int) -> dict[str, dict[str, Any]]:
    return {
        table.name: {index.name: ([c.name for c in index.columns], index.unique) for index in table.indexes}
        for table in catalog.tables_of(projection, generation)
    }


def indexes_found(engine: sa.Engine, projection: Projection, generation: int) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # SQLite's pragmas answer from the schema this connection
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master")  # last read: read it anew
        inspector = sa.inspect(conn)
        return {
            table.name: {
                index["name"]: (index["column_names"], bool(index["unique"]))
                for index in inspector.get_indexes(table.name)
            }
            for table in catalog.tables_of(projection, generation)
        }


def rows_shown(engine: sa.Engine, projection: Projection, generation: int) -> dict[str, list[Any]]:
    """What each view shows, in key order, less the columns sealed again by every rebuild."""
    shown = {}
    with engine.connect() as conn:
        for table in catalog.tables_of(projection, generation):
            columns = [c for c in table.columns if c.name not in SEALED]
            view = sa.table(table.name.removesuffix(f"_g{generation}"), *[sa.column(c.name) for c in columns])
            order = [view.c[c.name] for c in table.primary_key.columns]
            shown[view.name] = [tuple(row) for row in conn.execute(sa.select(view).order_by(*order))]
    return shown


def test_the_live_generation_is_created_with_every_index(components: Components) -> None:
    for projection in components.projections.values():
        assert indexes_found(components.engine, projection, 1) == indexes_defined(projection, 1)


def test_a_building_generation_has_no_secondary_index_until_it_has_caught_up(components: Components) -> None:
    with_history(components)
    engine, projection = components.engine, components.projections["users"]
    generation = catalog.begin_rebuild(engine, projection)
    ProjectionRunner(projection, components.identity, engine, batch_size=10).run_batch(generation)

    (building,) = indexes_found(engine, projection, generation).values()
    assert building == {f"users_g{generation}_username": (["username_folded"], True)}  # uniqueness holds
    assert len(indexes_defined(projection, generation)[f"users_g{generation}"]) == 6
    assert indexes_found(engine, projection, 1) == indexes_defined(projection, 1)  # the live one serves


@pytest.mark.parametrize("name", ["users", "api_keys", "audit_log"])
def test_a_rebuild_ends_with_every_index_on_the_live_tables(components: Components, name: str) -> None:
    with_history(components)
    projection = components.projections[name]
    before = rows_shown(components.engine, projection, 1)

    generation = rebuild(projection, components.identity, components.engine, batch_size=10)

    assert generation == 2
    assert indexes_found(components.engine, projection, 2) == indexes_defined(projection, 2)
    assert rows_shown(components.engine, projection, 2) == before


def test_an_interrupted_rebuild_resumes_and_ends_with_every_index_and_the_same_rows(
    components: Components,
) -> None:
    with_history(components)
    identity, engine, projection = components.identity, components.engine, components.projections["audit_log"]

    def dies_after_the_first_batch(done: int, head: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        rebuild(projection, identity, engine, progress=dies_after_the_first_batch, batch_size=10)
    with engine.connect() as conn:
        assert 0 < catalog.position(conn, "audit_log", 2) < identity.head_position()
        assert catalog.live_generation(conn, "audit_log")[0] == 1
    first, *_ = catalog.deferred_indexes(projection, 2)
    with engine.begin() as conn:  # as if it died again while building the indexes, after the first
        conn.execute(CreateIndex(first))

    assert rebuild(projection, identity, engine, batch_size=10) == 2  # resumed, not restarted
    assert indexes_found(engine, projection, 2) == indexes_defined(projection, 2)
    resumed = rows_shown(engine, projection, 2)

    assert rebuild(projection, identity, engine) == 3  # a fresh one, from position 0
    assert rows_shown(engine, projection, 3) == resumed
    assert len(resumed["audit_log"]) == 3 * 12  # registered, key issued, renamed
