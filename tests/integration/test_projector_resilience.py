"""The projector under abuse, on PostgreSQL: killed with SIGKILL while it catches up, its
database connections terminated while it follows, and two workers competing for one projection.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from domain.audit import AuditContext, acting_as
from eventstore.identity import Identity
from eventstore.passwords import Passwords
from eventstore.personal_data import Sealer
from ledgerline.bootstrap import Components, build
from projections import read_side
from projections.audit_log.projection import AuditLogProjection
from projections.rebuild import rebuild
from projections.worker import ProjectionWorker, start_workers
from tests.conftest import TEST_SECRET, settings_for
from tests.integration.helpers import register, user_context

LEDGERLINE = str(Path(sys.executable).with_name("ledgerline"))
VIEWS = {"users": "id", "api_keys": "id", "audit_log": "position"}  # view -> primary key
POOL_SIZE = "5"  # few connections per application: the server is shared with other tests


# ---- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def built(pg_database: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Components]:
    components = build(
        settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE=POOL_SIZE),
        init=True,
        passwords=fast_passwords,
    )
    try:
        yield components
    finally:
        components.close()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def passed(engine: Engine, name: str, position: int) -> Callable[[], bool]:
    """A check: has projection ``name`` moved past ``position``?"""
    return lambda: read_side.positions(engine)[name] > position


def stop_all(stop: threading.Event, workers: list[ProjectionWorker]) -> None:
    stop.set()
    for worker in workers:
        worker.join(timeout=30)


def committed_audit_positions(identity: Identity) -> list[int]:
    topics = sorted(AuditLogProjection.topics)
    found: list[int] = []
    start = 0
    while page := identity.recorder.select_notifications(
        start, 1000, topics=topics, inclusive_of_start=False
    ):
        found.extend(n.id for n in page)
        start = page[-1].id
    return found


def audit_positions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT position FROM audit_log ORDER BY position")).scalars())


def assert_audit_exactly_once(identity: Identity, engine: Engine) -> None:
    projected = audit_positions(engine)
    assert [p for p, n in Counter(projected).items() if n > 1] == [], "an event was projected twice"
    assert projected == committed_audit_positions(identity)


def write_some(identity: Identity, prefix: str, users: int = 3) -> None:
    """A few users, each with a profile update and an API key with some usage."""
    for n in range(users):
        user = register(identity, f"{prefix}{n}")
        with user_context(user.id):
            identity.update_user(user.id, full_name=f"{prefix.title()} {n}")
            key = identity.issue_api_key(user.id, name="ci", permissions={"users:read": True})
            identity.record_api_key_usage(
                key.result.id, count=2, last_used_at=datetime.now(UTC), last_used_ip="203.0.113.9"
            )


def terminate_other_backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


# ---- a) kill -9 while catching up -------------------------------------------------------------

USERS = 6
KEYS = 4
ROUNDS = 8  # per round: 500 profile updates per user, 100 usage records per key
KILLS_WANTED = 6


def write_many(identity: Identity) -> None:
    """~26,000 events, saved in batches of hundreds (one append per batch)."""
    context = AuditContext(
        actor_type="system", request_id="bulk", ip_address="192.0.2.1", user_agent="crash-test"
    )
    with acting_as(context):
        user_ids = [register(identity, f"bulk{n}").id for n in range(USERS)]
        key_ids = [
            identity.issue_api_key(user_ids[n], name=f"key{n}", permissions={"users:read": True}).result.id
            for n in range(KEYS)
        ]
        users = [identity.get_user(user_id) for user_id in user_ids]
        keys = [identity.get_api_key(key_id) for key_id in key_ids]
        moment = datetime.now(UTC)
        for round_ in range(ROUNDS):
            for n, user in enumerate(users):
                for i in range(500):
                    user.update_profile(full_name=f"n{round_}-{n}-{i}")
                identity.save(user)
            for n, key in enumerate(keys):
                for i in range(100):
                    moment += timedelta(milliseconds=1)
                    key.record_usage(count=1 + i % 3, last_used_at=moment, last_used_ip=f"198.51.100.{n}")
                identity.save(key)
        for n, key_id in enumerate(key_ids):  # and some through the use case
            identity.record_api_key_usage(
                key_id, count=5, last_used_at=moment + timedelta(seconds=n + 1), last_used_ip="203.0.113.1"
            )


USES_PER_ROUND = sum(1 + i % 3 for i in range(100))  # the counts recorded per key and round


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


def projector_env(url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LEDGERLINE_DATABASE_URL": url,
        "LEDGERLINE_SECRET_KEY": TEST_SECRET,
        "LEDGERLINE_DATA_DIR": str(data_dir),
    }


def snapshot(engine: Engine, sealer: Sealer) -> dict[str, list[dict[str, Any]]]:
    """Every row of every read view, sealed personal data revealed (sealing uses a fresh nonce
    each time, so two correct projections differ in ciphertext, never in what it says)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for view, key in VIEWS.items():
            rows = conn.execute(text(f"SELECT * FROM {view} ORDER BY {key}")).mappings()
            tables[view] = [{name: revealed(value, sealer) for name, value in row.items()} for row in rows]
    return tables


def revealed(value: Any, sealer: Sealer) -> Any:
    if isinstance(value, str) and value.startswith("{"):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, dict) and {"v", "s", "c"} <= set(decoded):
            return ("revealed", sealer.reveal(value))
        return value
    if isinstance(value, dict):
        if set(value) == {"sealed"}:
            return {"sealed": revealed(value["sealed"], sealer)}
        return {name: revealed(inner, sealer) for name, inner in value.items()}
    if isinstance(value, list):
        return [revealed(inner, sealer) for inner in value]
    return value


def test_kill_9_while_catching_up_loses_and_doubles_nothing(
    built: Components, pg_database: str, tmp_path: Path
) -> None:
    identity, engine = built.identity, built.engine
    write_many(identity)
    head = identity.head_position()
    assert head > 20_000
    names = set(built.projections)
    env = projector_env(pg_database, tmp_path)
    log_path = tmp_path / "project.log"
    log = log_path.open("ab")
    chance = random.Random(3)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([LEDGERLINE, "project"], env=env, stdout=log, stderr=log)

    # Each round waits until one projection (in turn) commits a batch, then kills the process a
    # random moment later: inside its next batch, before it reaches the head.
    kills: list[tuple[str, int]] = []
    rounds = 0
    while len(kills) < KILLS_WANTED and rounds < 3 * KILLS_WANTED:
        before = read_side.positions(engine)
        targets = sorted(name for name in names if before[name] < head)
        if not targets:
            break  # all caught up: no more mid-batch kills possible
        target = targets[rounds % len(targets)]
        rounds += 1
        process = start()
        try:
            moved = wait_until(passed(engine, target, before[target]), 60, 0.005)
            assert moved, f"{target} did not move within 60 s: {tail(log_path)}"
            time.sleep(chance.uniform(0, 0.1))
        finally:
            process.kill()  # SIGKILL
            process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        after = read_side.positions(engine)[target]
        if after < head:
            kills.append((target, after))
    assert len(kills) >= 5, f"only {len(kills)} kills before the head in {rounds} rounds: {kills}"
    assert {target for target, _ in kills} == names, kills

    # A final run catches up by itself and stops cleanly on SIGTERM.
    process = start()
    try:
        caught_up = wait_until(lambda: min(read_side.positions(engine).values()) >= head, 180, 0.1)
        assert caught_up, f"stuck at {read_side.positions(engine)} of {head}: {tail(log_path)}"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        log.close()
    assert read_side.positions(engine) == dict.fromkeys(names, head)

    # Nothing lost, nothing doubled: the live tables equal a clean rebuild from position 0.
    sealer = Sealer(identity.data_keys)
    live = snapshot(engine, sealer)
    assert_audit_exactly_once(identity, engine)
    assert sorted((row["full_name"], row["version"]) for row in live["users"]) == [
        (f"n{ROUNDS - 1}-{n}-499", 1 + ROUNDS * 500) for n in range(USERS)
    ]
    assert [row["usage_count"] for row in live["api_keys"]] == [ROUNDS * USES_PER_ROUND + 5] * KEYS
    for projection in built.projections.values():
        rebuild(projection, identity, engine)
    rebuilt = snapshot(engine, sealer)
    for view in VIEWS:
        assert len(live[view]) == len(rebuilt[view]), view
        assert live[view] == rebuilt[view], view


# ---- b) database connections killed while following -------------------------------------------


def test_worker_resumes_by_itself_after_its_connections_are_killed(
    built: Components, pg_database: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    stop = threading.Event()
    workers = start_workers(
        list(built.projections.values()), built.identity, built.engine, built.settings.database, stop
    )
    fresh: Components | None = None
    try:
        write_some(built.identity, "before")
        head = built.identity.head_position()
        assert read_side.wait_for_position(built.engine, head, timeout=30)

        terminated = 0
        for _ in range(3):
            terminated += terminate_other_backends(pg_database)
            time.sleep(1.0)
        assert terminated >= len(workers)  # at least each worker's lock connection

        fresh = build(
            settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE=POOL_SIZE), passwords=fast_passwords
        )
        write_some(fresh.identity, "after")
        head = fresh.identity.head_position()
        assert read_side.wait_for_position(fresh.engine, head, timeout=30), (
            f"stuck at {read_side.positions(fresh.engine)} of {head}"
        )
        assert all(worker.is_alive() for worker in workers)
        assert wait_until(lambda: all(w.is_leader.is_set() for w in workers), timeout=10)
        assert_audit_exactly_once(fresh.identity, fresh.engine)
        assert read_side.positions(fresh.engine) == dict.fromkeys(built.projections, head)
    finally:
        stop_all(stop, workers)
        if fresh is not None:
            fresh.close()
    assert not any(worker.is_alive() for worker in workers)


# After every connection drops (a restart) the store's pool holds only dead ones; the worker
# discards them (pool.check) instead of letting each getconn() test them with growing pauses.
def test_a_lone_worker_resumes_within_seconds_after_its_connections_are_killed(
    pg_database: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    """What `ledgerline project --projection audit_log` does after a database restart, with the
    default pool size: the worker should be back well before its own 10 s backoff cap."""
    settings = settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE="10")
    components = build(settings, init=True, passwords=fast_passwords)
    stop = threading.Event()
    workers = start_workers(
        [components.projections["audit_log"]], components.identity, components.engine, settings.database, stop
    )
    fresh: Components | None = None
    try:
        write_some(components.identity, "before", users=1)
        head = components.identity.head_position()
        assert read_side.wait_for_position(components.engine, head, timeout=30, names=("audit_log",))
        terminate_other_backends(pg_database)
        time.sleep(0.5)
        fresh = build(settings, passwords=fast_passwords)
        write_some(fresh.identity, "after", users=1)
        head = fresh.identity.head_position()
        assert read_side.wait_for_position(fresh.engine, head, timeout=5, names=("audit_log",))
    finally:
        stop_all(stop, workers)
        if fresh is not None:
            fresh.close()
        components.close()


# ---- c) two workers on one projection ---------------------------------------------------------


def test_one_worker_leads_and_the_standby_takes_over(
    built: Components, pg_database: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    other = build(
        settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE=POOL_SIZE), passwords=fast_passwords
    )
    names = ("audit_log",)
    first_stop, second_stop = threading.Event(), threading.Event()
    first: list[ProjectionWorker] = []
    second: list[ProjectionWorker] = []
    try:
        first = start_workers(
            [built.projections["audit_log"]],
            built.identity,
            built.engine,
            built.settings.database,
            first_stop,
        )
        assert wait_until(lambda: first[0].is_leader.is_set(), timeout=10)
        second = start_workers(
            [other.projections["audit_log"]],
            other.identity,
            other.engine,
            other.settings.database,
            second_stop,
        )
        leader, standby = first[0], second[0]

        def leaders() -> int:
            return sum(worker.is_leader.is_set() for worker in (leader, standby))

        # Exactly one leads while events are written and projected.
        write_some(built.identity, "one")
        for _ in range(30):
            assert leaders() == 1 and leader.is_leader.is_set()
            time.sleep(0.05)
        write_some(other.identity, "two")
        head = built.identity.head_position()
        assert read_side.wait_for_position(built.engine, head, timeout=30, names=names)
        assert leaders() == 1 and leader.is_leader.is_set()
        assert_audit_exactly_once(built.identity, built.engine)

        # The leader stops: the standby takes over and carries on.
        stop_all(first_stop, first)
        assert not leader.is_alive()
        assert wait_until(standby.is_leader.is_set, timeout=15), "the standby did not take over"
        assert leaders() == 1
        write_some(other.identity, "three")
        head = other.identity.head_position()
        assert read_side.wait_for_position(other.engine, head, timeout=30, names=names)
        assert read_side.positions(other.engine)["audit_log"] == head
        assert_audit_exactly_once(other.identity, other.engine)
        assert standby.is_alive()
    finally:
        stop_all(first_stop, first)
        stop_all(second_stop, second)
        other.close()
    assert not any(worker.is_alive() for worker in first + second)
