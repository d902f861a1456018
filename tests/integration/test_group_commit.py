"""Group commit on PostgreSQL: concurrent saves of one process share a transaction, and each
still gets its own positions, its own error, and all-or-nothing for its own events.

Some tests build a group deterministically: another connection holds the events table's lock,
so the first save (the leader) waits for it while the next saves queue behind; when the lock is
released, the leader commits alone and the queued saves are written as one group.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from domain.errors import UsernameTakenError
from eventstore.group_commit import GroupCommitRecorder
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from ledgerline.settings import Settings, SettingsError
from tests.conftest import settings_for
from tests.integration.helpers import register
from tests.integration.merkle_attacks import tree_size, verify
from tests.integration.test_concurrency import race

THREADS = 16
POOL_SIZE = "4"  # grows to 8: the server is shared, and a group needs one connection
PROBE_TOPIC = "tests.group_commit:Probe"


@pytest.fixture
def postgres(pg_database: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Components]:
    settings = settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE=POOL_SIZE)
    built = build(settings, init=True, passwords=fast_passwords)
    try:
        yield built
    finally:
        built.close()


class GroupSizes:
    """Records the number of saves in each group the recorder writes."""

    def __init__(self, recorder: GroupCommitRecorder) -> None:
        self.sizes: list[int] = []
        write_group = recorder._write_group

        def recorded(group: list[Any]) -> None:
            self.sizes.append(len(group))
            write_group(group)

        recorder._write_group = recorded


def probe(originator_id: UUID, version: int) -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id, originator_version=version, topic=PROBE_TOPIC, state=b"{}"
    )


def in_threads(count: int, action: Callable[[int], Any]) -> list[Any]:
    """``action(i)`` in ``count`` threads released together: each result, or its exception."""
    return race(action, count)


def committed(components: Components) -> list[tuple[int, UUID, int]]:
    """Every committed event as (position, originator, version), read in position order."""
    found: list[tuple[int, UUID, int]] = []
    start = 0
    while page := components.identity.recorder.select_notifications(start, 500, inclusive_of_start=False):
        found.extend((n.id, UUID(str(n.originator_id)), n.originator_version) for n in page)
        start = page[-1].id
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@contextmanager
def table_locked(url: str) -> Iterator[None]:
    """Another connection holds the lock every insert takes, as a writer in another process would."""
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE identity_events IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def test_group_commit_is_on_by_default_on_postgresql_and_every_recorder_extends_the_tree(
    tmp_path: Path,
) -> None:
    def recorder(environ: dict[str, str]) -> str:
        return Settings.from_env(environ).database.eventsourcing_env(create_table=False)[
            "APPLICATION_RECORDER_TOPIC"
        ]

    url = {"LEDGERLINE_DATABASE_URL": "postgresql://root@127.0.0.1:5432/ledgerline"}
    assert recorder(url) == "eventstore.group_commit:GroupCommitRecorder"
    # Off: one save per transaction, still with its leaves (never the library's bare recorder).
    assert recorder({**url, "LEDGERLINE_GROUP_COMMIT": "false"}) == "eventstore.group_commit:OneSaveRecorder"
    sqlite = {"LEDGERLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}"}
    assert recorder(sqlite) == "eventstore.sqlite_recorder:TreeSQLiteRecorder"
    with pytest.raises(SettingsError, match="LEDGERLINE_GROUP_COMMIT"):
        Settings.from_env({**url, "LEDGERLINE_GROUP_COMMIT": "sometimes"})


def test_concurrent_commands_commit_in_groups_each_with_its_own_position(postgres: Components) -> None:
    identity = postgres.identity
    assert isinstance(identity.recorder, GroupCommitRecorder)
    users = [register(identity, f"user{i}").id for i in range(THREADS)]
    groups = GroupSizes(identity.recorder)
    rounds = 8

    outcomes = in_threads(
        THREADS, lambda i: [identity.update_user(users[i], full_name=f"Name {k}") for k in range(rounds)]
    )

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(groups.sizes) == THREADS * rounds
    assert max(groups.sizes) > 1, "no save ever shared a transaction"
    log = committed(postgres)
    positions = [position for position, _, _ in log]
    assert positions == list(range(1, len(log) + 1))  # in order, nothing lost, no gaps
    position_of = {(originator, version): position for position, originator, version in log}
    for user, results in zip(users, outcomes, strict=True):
        own = [r.position for r in results]
        assert own == sorted(own) and len(set(own)) == rounds  # one thread's commands in order
        for result in results:  # read-your-writes: the position is this command's own event
            assert position_of[(user, result.version)] == result.position
    assert len({r.position for results in outcomes for r in results}) == THREADS * rounds
    assert tree_size(postgres) == positions[-1] and verify(postgres).ok  # each group extended the tree


def test_a_conflicting_save_gets_its_own_error_and_the_rest_of_its_group_commits(
    postgres: Components, pg_database: str
) -> None:
    recorder = postgres.identity.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    taken = uuid4()
    recorder.insert_events([probe(taken, 1)])
    first, half_new, last = uuid4(), uuid4(), uuid4()
    saves = [
        [probe(first, 1), probe(first, 2)],
        [probe(half_new, 1), probe(taken, 1)],  # its second event's slot is taken
        [probe(last, 1)],
    ]
    groups = GroupSizes(recorder)
    outcomes: dict[int, Any] = {}

    def save(index: int, events: list[StoredEvent]) -> None:
        try:
            outcomes[index] = recorder.insert_events(events)
        except Exception as error:  # asserted on below
            outcomes[index] = error

    with table_locked(pg_database):
        leader = threading.Thread(target=save, args=(-1, [probe(uuid4(), 1)]))
        leader.start()
        wait_until(lambda: recorder._leading and not recorder._queue)  # it leads, and waits for the lock
        followers = []
        for index, events in enumerate(saves):
            followers.append(threading.Thread(target=save, args=(index, events)))
            followers[-1].start()
            wait_until(lambda: len(recorder._queue) == len(followers))  # queued in this order
    for thread in [leader, *followers]:
        thread.join(timeout=30)

    assert groups.sizes == [1, 3]
    assert isinstance(outcomes[1], IntegrityError)
    first_ids, last_ids = outcomes[0], outcomes[2]
    assert len(first_ids) == 2 and first_ids[1] == first_ids[0] + 1
    assert len(last_ids) == 1 and last_ids[0] > first_ids[1] + 1  # the failed save spent positions
    assert recorder.select_events(half_new) == []  # none of the failed save's events is in
    assert [e.originator_version for e in recorder.select_events(taken)] == [1]
    log = committed(postgres)
    assert [(p, o, v) for p, o, v in log if o in (first, last)] == [
        (first_ids[0], first, 1),
        (first_ids[1], first, 2),
        (last_ids[0], last, 1),
    ]


def test_notifications_read_in_order_have_gaps_only_where_saves_were_rolled_back(
    postgres: Components,
) -> None:
    recorder = postgres.identity.recorder
    taken = uuid4()
    recorder.insert_events([probe(taken, 1)])
    saves_per_thread = 12

    def saves(i: int) -> list[tuple[list[StoredEvent], Any]]:
        done: list[tuple[list[StoredEvent], Any]] = []
        for k in range(saves_per_thread):
            new = uuid4()
            conflicting = (i + k) % 4 == 0
            events = [probe(new, 1), probe(taken if conflicting else new, 1 if conflicting else 2)]
            try:
                done.append((events, recorder.insert_events(events)))
            except IntegrityError as error:
                done.append((events, error))
        return done

    outcomes = [save for thread in in_threads(THREADS, saves) for save in thread]

    failed = [events for events, result in outcomes if isinstance(result, IntegrityError)]
    written = [(events, ids) for events, ids in outcomes if not isinstance(ids, Exception)]
    assert len(failed) == THREADS * saves_per_thread // 4
    log = committed(postgres)
    positions = [position for position, _, _ in log]
    assert positions == sorted(set(positions))
    assert set(positions) == {1} | {i for _, ids in written for i in ids}  # exactly what committed
    for events, ids in written:  # each save's events in its own positions, next to each other
        assert list(ids) == list(range(ids[0], ids[0] + len(events)))
    gaps = set(range(1, positions[-1] + 1)) - set(positions)
    # Only rolled-back positions: each failed save's (up to its 2 events), and those of groups
    # whose one INSERT failed before their saves were written one by one.
    assert len(failed) <= len(gaps) <= 2 * len(failed) + recorder.abandoned_events
    for events in failed:
        assert recorder.select_events(events[0].originator_id) == []
    assert tree_size(postgres) == positions[-1]  # the gaps are void leaves
    report = verify(postgres)
    assert report.ok and report.events_verified == len(positions), report


def test_a_race_for_one_username_inside_groups_has_one_winner_and_the_rest_commit(
    postgres: Components,
) -> None:
    identity = postgres.identity
    threads = 8  # registrations also open data-key connections: few, on a shared server
    racers = threads // 2

    def command(i: int) -> Any:
        if i < racers:
            return register(identity, "mallory" if i % 2 else "MALLORY", email=f"m{i}@example.com")
        return register(identity, f"bystander{i}")

    outcomes = in_threads(threads, command)

    race, bystanders = outcomes[:racers], outcomes[racers:]
    assert sum(not isinstance(o, Exception) for o in race) == 1
    assert all(isinstance(o, UsernameTakenError) for o in race if isinstance(o, Exception))
    assert not [o for o in bystanders if isinstance(o, Exception)], bystanders
    position_of = {(originator, version): position for position, originator, version in committed(postgres)}
    for result in [o for o in outcomes if not isinstance(o, Exception)]:
        assert position_of[(result.id, result.version)] <= result.position
        assert identity.get_user(result.id).version == result.version
