"""Gap-safety torture test on PostgreSQL: writers that hold their insert transaction open for a
random moment, some of which roll back after taking positions (leaving gaps), from two separate
connection pools, while a projector follows live. At the end every committed event is projected
exactly once, the tracking position equals the head, and the log's Merkle tree covers every
committed event (the rolled-back positions as void leaves) and verifies. A webhook subscription
follows too: its receiver got every committed audit entry exactly once, in position order.

The delays and rollbacks are injected into the library's PostgreSQL recorder: its
``_insert_stored_events`` runs inside the insert transaction, after the table lock is taken and
the positions are drawn from the sequence, so a delay there holds the lock and a database error
there aborts the transaction with its positions already spent.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import PersistenceError
from sqlalchemy import text
from sqlalchemy.engine import Engine

from eventstore.audit_chain.tree import stored_size
from eventstore.identity import Identity
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from ledgerline.streaming import start_deliverer
from projections import read_side
from projections.audit_log.projection import AuditLogProjection
from projections.users.queries import user_by_id
from projections.worker import ProjectionWorker, start_workers
from tests.conftest import settings_for
from tests.integration.helpers import register, user_context
from tests.integration.merkle_attacks import Watcher, verify
from tests.integration.stream_receiver import Receiver, receiving
from tests.integration.test_streaming import STREAM_ENV, fast, subscribe

WRITERS = 8
USERS_PER_WRITER = 8
UPDATES_PER_USER = 4  # 8 writers x 8 users x (1 + 4) commands = 320 commands
MAX_DELAY = 0.020
ROLLBACK_RATE = 0.10
INJECTED = "injected rollback"
POOL_SIZE = "6"  # per application: 4 writers each, and few connections for a shared server


class Injector:
    """Wraps a recorder's ``_insert_stored_events``: a random delay inside the transaction, and
    for some calls an error raised by the database itself, which rolls the transaction back."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.calls = 0
        self.rollbacks = 0
        self.absorbed = 0

    def install(self, identity: Identity) -> None:
        recorder: Any = identity.recorder
        original = recorder._insert_stored_events

        def insert_with_delay(curs: Any, stored_events: Any, **kwargs: Any) -> None:
            original(curs, stored_events, **kwargs)  # lock taken, positions drawn, rows inserted
            together = getattr(recorder._in_group, "together", False)  # a group's saves in one INSERT
            with self._lock:
                delay = self._random.uniform(0, MAX_DELAY)
                fail = self._random.random() < ROLLBACK_RATE
                self.calls += 1
                # A group's INSERT that fails is rolled back and its saves written one by one (each
                # drawn again here): only a save's own failure reaches its caller.
                self.rollbacks += fail and not together
                self.absorbed += fail and together
            time.sleep(delay)  # still inside the transaction, holding the table lock
            if fail:
                curs.execute(f"DO $$ BEGIN RAISE EXCEPTION '{INJECTED}'; END $$")

        recorder._insert_stored_events = insert_with_delay


@pytest.fixture
def two_pools(pg_database: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[list[Components]]:
    """Two independently built applications on one database: separate connection pools."""
    settings = settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE=POOL_SIZE, **STREAM_ENV)
    first = build(settings, init=True, passwords=fast_passwords)
    second = build(settings, passwords=fast_passwords)
    try:
        yield [first, second]
    finally:
        second.close()
        first.close()


def committed_audit_positions(identity: Identity) -> list[int]:
    """The positions of every committed event the audit log projects, paged from the store."""
    topics = sorted(AuditLogProjection.topics)
    found: list[int] = []
    start = 0
    while page := identity.recorder.select_notifications(start, 500, topics=topics, inclusive_of_start=False):
        found.extend(n.id for n in page)
        start = page[-1].id
    return found


def all_committed_positions(identity: Identity) -> list[int]:
    found: list[int] = []
    start = 0
    while page := identity.recorder.select_notifications(start, 1000, inclusive_of_start=False):
        found.extend(n.id for n in page)
        start = page[-1].id
    return found


def audit_positions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT position FROM audit_log ORDER BY position")).scalars())


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def test_every_committed_event_is_projected_exactly_once_despite_delays_and_rollbacks(
    two_pools: list[Components],
) -> None:
    first = two_pools[0]
    with receiving() as receiver:
        subscribe(first, receiver.url, from_position=1)  # before the injected rollbacks
        injectors = [Injector(seed=1), Injector(seed=2)]
        for injector, components in zip(injectors, two_pools, strict=True):
            injector.install(components.identity)
        stop = threading.Event()
        # Every projection, so the three share one feed (one reader) while the writers write.
        projections = list(first.projections.values())
        workers: list[threading.Thread] = [
            *start_workers(projections, first.identity, first.engine, first.settings.database, stop)
        ]
        fast(first)
        workers.append(start_deliverer(first, stop))  # a subscription follows the writers too
        _torture(two_pools, injectors, stop, workers, receiver)


def _torture(
    two_pools: list[Components],
    injectors: list[Injector],
    stop: threading.Event,
    workers: list[threading.Thread],
    receiver: Receiver,
) -> None:
    first, second = two_pools
    try:
        projectors = [w for w in workers if isinstance(w, ProjectionWorker)]
        assert wait_until(lambda: all(w.is_leader.is_set() for w in projectors), timeout=15)

        outcomes: Counter[str] = Counter()
        outcomes_lock = threading.Lock()
        failures: list[BaseException] = []
        registered_ids: list[Any] = []

        def count(kind: str) -> None:
            with outcomes_lock:
                outcomes[kind] += 1

        def attempt(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            """The action's result, or None when the injected rollback undid it."""
            try:
                result = action(*args, **kwargs)
            except PersistenceError as error:
                if INJECTED not in str(error):
                    raise
                count("rolled back")
                return None
            count("committed")
            return result

        def writer(index: int) -> None:
            identity = two_pools[index % 2].identity  # writes come from both pools
            pause = random.Random(index)
            try:
                for n in range(USERS_PER_WRITER):
                    registered = attempt(register, identity, f"w{index}u{n}")
                    if registered is None:
                        continue  # rolled back: this user does not exist
                    registered_ids.append(registered.id)
                    for k in range(UPDATES_PER_USER):
                        with user_context(registered.id):
                            attempt(identity.update_user, registered.id, full_name=f"Name {k}")
                        time.sleep(pause.uniform(0, 0.005))
            except BaseException as error:  # reported by the main thread
                failures.append(error)

        threads = [threading.Thread(target=writer, args=(i,), name=f"writer-{i}") for i in range(WRITERS)]
        with Watcher(first) as watcher:  # the tree's size against the head, at every instant
            for thread in threads:
                thread.start()
            seen_while_writing, deadline = 0, time.monotonic() + 120
            while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
                seen_while_writing = max(seen_while_writing, read_side.positions(first.engine)["audit_log"])
                time.sleep(0.05)
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "a writer hung"
        assert not failures, failures

        assert seen_while_writing > 0, "the projector did not follow while the writers wrote"
        head = first.identity.head_position()
        assert second.identity.head_position() == head
        assert read_side.wait_for_position(first.engine, head, timeout=60), (
            f"a projection is stuck short of {head}: {read_side.positions(first.engine)}"
        )
        last = committed_audit_positions(first.identity)[-1]
        assert wait_until(lambda: receiver.accepted_positions()[-1:] == [last], timeout=60)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert not any(worker.is_alive() for worker in workers), "a worker did not stop"

    # Rollbacks happened and left gaps in the positions.
    rolled_back = sum(injector.rollbacks for injector in injectors)
    assert rolled_back > 0
    assert outcomes["rolled back"] == rolled_back
    assert outcomes["committed"] > 200
    committed = all_committed_positions(first.identity)
    assert committed[-1] == head
    gaps = set(range(1, head + 1)) - set(committed)
    assert gaps, "no gaps: the rollbacks did not spend any position"

    # Every committed audited event projected exactly once, nothing else.
    expected = committed_audit_positions(first.identity)
    projected = audit_positions(first.engine)
    duplicates = [position for position, n in Counter(projected).items() if n > 1]
    assert not duplicates
    assert sorted(set(projected) - set(expected)) == []
    assert sorted(set(expected) - set(projected)) == []
    assert projected == expected

    # Every live tracking position is the head, and each user's row has every event of its
    # user once (its version is the aggregate's).
    assert set(read_side.positions(first.engine).values()) == {head}
    with first.engine.connect() as conn:
        for user_id in registered_ids:
            row = user_by_id(conn, user_id)
            assert row is not None and row["version"] == first.identity.get_user(user_id).version

    # The subscription got every committed audit entry exactly once, in order (it always
    # answered 2xx: nothing was retried).
    assert receiver.accepted_positions() == expected

    # Every committed event is a leaf of the tree, each rolled-back position a void leaf.
    assert watcher.behind() == []
    with first.engine.connect() as conn:
        assert stored_size(conn) == head
    report = verify(first)
    assert report.ok and report.events_verified == len(committed), report
