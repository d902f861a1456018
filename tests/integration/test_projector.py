"""The projector at work: live following, read-your-writes, exactly-once, blue-green rebuilds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ledgerline.bootstrap import Components
from projections import catalog
from projections.audit_log.queries import all_positions
from projections.catalog import TrackingConflictError
from projections.read_side import positions, status, wait_for_position
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from projections.users.queries import count_users, user_by_id
from projections.worker import start_workers
from tests.integration.helpers import register


def test_workers_follow_live_and_reads_catch_up(components: Components) -> None:
    stop = threading.Event()
    workers = start_workers(
        list(components.projections.values()),
        components.identity,
        components.engine,
        components.settings.database,
        stop,
    )
    try:
        for n in range(20):
            result = register(components.identity, f"user{n}")
            assert wait_for_position(components.engine, result.position, timeout=10)
            with components.engine.connect() as conn:
                assert user_by_id(conn, result.id) is not None  # read-your-writes
        head = components.identity.head_position()
        assert set(positions(components.engine).values()) == {head}
        assert all(
            s.state == "caught-up" and s.lag_events == 0
            for s in status(components.engine, components.identity)
        )
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    assert not any(worker.is_alive() for worker in workers)


def test_two_runners_on_one_generation_never_both_apply(components: Components) -> None:
    identity = components.identity
    for n in range(5):
        register(identity, f"user{n}")
    projection = components.projections["users"]
    first = ProjectionRunner(projection, identity, components.engine)
    second = ProjectionRunner(projection, identity, components.engine)
    select = identity.recorder.select_notifications

    def first_commits_in_between(*args: Any, **kwargs: Any) -> Any:
        identity.recorder.select_notifications = select  # type: ignore[method-assign]
        assert first.run_batch(1) > 0  # the other worker applies the same batch meanwhile
        return select(*args, **kwargs)

    identity.recorder.select_notifications = first_commits_in_between  # type: ignore[method-assign]
    with pytest.raises(TrackingConflictError):
        second.run_batch(1)  # it read position 0 before the first one moved it
    with components.engine.connect() as conn:
        assert catalog.position(conn, "users", 1) == identity.head_position()
        assert count_users(conn) == 5


def test_rebuild_while_reading_never_shows_a_partial_table(components: Components) -> None:
    identity, engine = components.identity, components.engine
    users = [register(identity, f"user{n}") for n in range(30)]
    for user in users[:10]:
        for k in range(20):
            identity.update_user(user.id, full_name=f"Name {k}")
    projection = components.projections["users"]
    ProjectionRunner(projection, identity, engine).catch_up(1)

    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                with engine.connect() as conn:
                    seen.append(count_users(conn))
            except BaseException as error:  # any failure is the test's failure
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        generation = rebuild(projection, identity, engine, batch_size=50)
    finally:
        stop.set()
        reader.join(timeout=10)
    assert generation == 2
    assert errors == []
    assert seen and set(seen) == {30}  # never an empty or half-built table
    with engine.connect() as conn:
        assert catalog.live_generation(conn, "users") == (2, projection.shape)
        tables = sa.inspect(conn).get_table_names()
    assert "users_g1" not in tables and "users_g2" in tables


def test_an_interrupted_rebuild_resumes_where_it_stopped(components: Components) -> None:
    identity, engine = components.identity, components.engine
    for n in range(12):
        register(identity, f"user{n}")
    projection = components.projections["audit_log"]
    ProjectionRunner(projection, identity, engine).catch_up(1)
    generation = catalog.begin_rebuild(engine, projection)
    runner = ProjectionRunner(projection, identity, engine, batch_size=10)
    runner.run_batch(generation)  # then the operator's process dies
    with engine.connect() as conn:
        halfway = catalog.position(conn, "audit_log", generation)
        assert 0 < halfway < identity.head_position()
        assert catalog.live_generation(conn, "audit_log")[0] == 1  # still serving the old one
    assert [s.building for s in status(engine, identity) if s.name == "audit_log"] == [generation]

    assert catalog.begin_rebuild(engine, projection) == generation  # resumed, not restarted
    assert rebuild(projection, identity, engine) == generation
    with engine.connect() as conn:
        assert len(all_positions(conn)) == 12


def test_projection_status_on_the_command_line(components: Components, tmp_path: Path) -> None:
    from tests.integration.test_cli import run

    register(components.identity, "alice")
    url = components.settings.database.url
    shown = run(url, tmp_path, "projections", "status")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:4] == ["projection", "gen", "position", "head"]
    assert {line.split()[0] for line in lines[1:]} == {"users", "api_keys", "audit_log", "audit_checkpoints"}
    assert all(line.split()[-1] == "catching-up" for line in lines[1:])  # nothing signed the new event yet
    head_ends = lines[0].index("head") + len("head")  # the columns line up under their headers
    assert all(line[:head_ends].split()[-1] == str(components.identity.head_position()) for line in lines[1:])
    rebuilt = run(url, tmp_path, "projections", "rebuild", "users")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "users: generation 2 is live" in rebuilt.stdout
    unknown = run(url, tmp_path, "projections", "rebuild", "nope")
    assert unknown.returncode == 2 and "'nope' is not one of" in unknown.stderr  # the names are listed
