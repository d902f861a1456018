"""Streaming on PostgreSQL across processes: kill -9 of ``ledgerline project`` mid-delivery loses
nothing and re-sends at most the batch that was not acknowledged in the cursor; two deliverers
on one database deliver each entry once (one leads, the other takes over when it stops)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from ledgerline.streaming import start_deliverer
from projections.streaming.cursors import cursor_states, subscription_cursor
from projections.streaming.options import StreamOptions
from projections.worker import start_workers
from tests.conftest import TEST_SECRET, settings_for
from tests.integration.helpers import register, user_context
from tests.integration.stream_receiver import receiving, wait_until
from tests.integration.test_projector_resilience import LEDGERLINE, tail
from tests.integration.test_streaming import STREAM_ENV, audited_positions, fast, subscribe

BATCH = StreamOptions().batch_size


@pytest.fixture
def pg(pg_database: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Components]:
    built = build(settings_for(pg_database, tmp_path, **STREAM_ENV), init=True, passwords=fast_passwords)
    fast(built)
    try:
        yield built
    finally:
        built.close()


def write_entries(components: Components, users: int, updates: int) -> None:
    identity = components.identity
    for n in range(users):
        user = register(identity, f"crash{n}")
        with user_context(user.id):
            for k in range(updates):
                identity.update_user(user.id, full_name=f"Name {n} {k}")


def cursor_of(components: Components, subscription_id: object) -> int:
    with components.engine.connect() as conn:
        return cursor_states(conn)[subscription_cursor(subscription_id)].delivered_through


def test_kill_9_mid_delivery_loses_nothing_and_resends_at_most_one_batch(
    pg: Components, pg_database: str, tmp_path: Path
) -> None:
    write_entries(pg, users=30, updates=7)  # 240 audit entries
    expected = None
    env = {
        **os.environ,
        **STREAM_ENV,
        "LEDGERLINE_DATABASE_URL": pg_database,
        "LEDGERLINE_SECRET_KEY": TEST_SECRET,
        "LEDGERLINE_DATA_DIR": str(tmp_path),
        "LEDGERLINE_POOL_SIZE": "3",
    }
    log_path = tmp_path / "project.log"
    with receiving(delay=0.01) as receiver, log_path.open("ab") as log:
        created = subscribe(pg, receiver.url, from_position=1)

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([LEDGERLINE, "project"], env=env, stdout=log, stderr=log)

        process = start()
        try:
            assert wait_until(lambda: len(receiver.accepted()) >= 130, 60), tail(log_path)
        finally:
            process.kill()  # SIGKILL, in the middle of a batch
            process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        at_kill = cursor_of(pg, created.result.id)
        before_restart = len(receiver.requests)
        expected = audited_positions(pg)
        assert 0 < at_kill < expected[-1], "killed after the end: nothing was in flight"

        process = start()
        try:
            assert wait_until(lambda: set(receiver.accepted_positions()) >= set(expected), 60), tail(log_path)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    positions = receiver.accepted_positions()
    assert sorted(set(positions)) == expected  # nothing lost, nothing foreign
    doubled = [p for p, n in Counter(positions).items() if n > 1]
    assert max(Counter(positions).values()) <= 2
    assert all(p > at_kill for p in doubled)  # only what the cursor had not acknowledged
    assert len(doubled) <= BATCH
    # Each run delivered in position order; the second started right after the cursor.
    first_run, second_run = positions[:before_restart], positions[before_restart:]
    assert first_run == sorted(first_run) and second_run == sorted(second_run)
    assert second_run[0] == min(p for p in expected if p > at_kill)
    assert cursor_of(pg, created.result.id) >= expected[-1]


def test_two_deliverers_on_one_database_deliver_each_entry_once_and_take_over(
    pg: Components, pg_database: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    second = build(settings_for(pg_database, tmp_path, **STREAM_ENV), passwords=fast_passwords)
    fast(second)
    first_stop, second_stop, projector_stop = threading.Event(), threading.Event(), threading.Event()
    workers = start_workers(
        [pg.projections["audit_log"]], pg.identity, pg.engine, pg.settings.database, projector_stop
    )
    try:
        with receiving() as receiver:
            created = subscribe(pg, receiver.url, from_position=1)
            one = start_deliverer(pg, first_stop)
            two = start_deliverer(second, second_stop)
            write_entries(pg, users=5, updates=2)
            head = pg.identity.head_position()
            assert wait_until(lambda: one.bound >= head, 20)
            expected = audited_positions(pg)
            assert wait_until(lambda: receiver.accepted_positions() == expected, 20)
            name = subscription_cursor(created.result.id)
            leaders = [d for d in (one, two) if d.stats.get(name) and d.stats[name].delivered]
            assert len(leaders) == 1, "one deliverer leads a subscription"
            leader, standby = (one, two) if leaders[0] is one else (two, one)
            (first_stop if leader is one else second_stop).set()  # the leader stops; its lock goes
            leader.join(timeout=10)
            assert not leader.is_alive()
            taken_over = leader.stats[name].delivered
            register(second.identity, "after-takeover")
            head = second.identity.head_position()
            assert wait_until(lambda: standby.bound >= head, 20)
            expected = audited_positions(pg)
            assert wait_until(lambda: receiver.accepted_positions() == expected, 20)
            assert wait_until(lambda: standby.stats[name].delivered_through >= expected[-1], 5)
            assert standby.stats[name].delivered >= 1 and leader.stats[name].delivered == taken_over
    finally:
        first_stop.set()
        second_stop.set()
        projector_stop.set()
        for worker in workers:
            worker.join(timeout=10)
        second.close()


def test_the_deliverer_runs_in_a_process_of_its_own_beside_the_projector(
    pg: Components, pg_database: str, tmp_path: Path
) -> None:
    write_entries(pg, users=5, updates=3)
    env = {
        **os.environ,
        **STREAM_ENV,
        "LEDGERLINE_DATABASE_URL": pg_database,
        "LEDGERLINE_SECRET_KEY": TEST_SECRET,
        "LEDGERLINE_DATA_DIR": str(tmp_path),
        "LEDGERLINE_POOL_SIZE": "3",
    }
    refused = subprocess.run([LEDGERLINE, "project", "--only-delivery", "--no-delivery"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "--only-delivery" in refused.stderr
    log_path = tmp_path / "project.log"
    with receiving() as receiver, log_path.open("ab") as log:
        subscribe(pg, receiver.url, from_position=1)
        projecting = [LEDGERLINE, "project", "--no-delivery"]
        projector = subprocess.Popen(projecting, env=env, stdout=log, stderr=log)
        try:
            assert wait_until(lambda: audited_positions(pg) != [], 60), tail(log_path)
            time.sleep(1)  # projected, and nothing delivered: this process streams nothing out
            assert receiver.requests == []
            deliverer = subprocess.Popen([LEDGERLINE, "project", "--only-delivery"], env=env,
                                         stdout=log, stderr=log)  # fmt: skip
            try:
                expected = audited_positions(pg)
                assert wait_until(lambda: receiver.accepted_positions() == expected, 60), tail(log_path)
            finally:
                deliverer.send_signal(signal.SIGTERM)
                assert deliverer.wait(timeout=30) == 0
        finally:
            projector.send_signal(signal.SIGTERM)
            assert projector.wait(timeout=30) == 0
