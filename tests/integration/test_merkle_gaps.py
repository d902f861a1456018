"""PostgreSQL's positions have gaps: a save refused inside a group (a version conflict) has drawn
its positions from the sequence and rolls back to its savepoint. Each skipped position is a void
leaf, so leaf index = position - 1 holds and ``verify`` is ok; an event slipped into a gap later,
or a void leaf changed, is found at that position."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from eventsourcing.persistence import IntegrityError, StoredEvent

from eventstore.audit_chain.tree import leaf_at
from eventstore.database import writing
from eventstore.group_commit import GroupCommitRecorder
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from tests.conftest import settings_for
from tests.integration.merkle_attacks import as_owner, positions, reference_void_leaf, tree_size, verify
from tests.integration.test_group_commit import GroupSizes, probe, table_locked, wait_until


@pytest.fixture
def postgres(pg_database: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Components]:
    built = build(
        settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE="4"), init=True, passwords=fast_passwords
    )
    try:
        yield built
    finally:
        built.close()


def gaps(components: Components) -> list[int]:
    stored = positions(components)
    return sorted(set(range(1, stored[-1] + 1)) - set(stored))


def leaves_at(components: Components, where: list[int]) -> list[bytes]:
    with components.engine.connect() as conn:
        return [leaf_at(conn, position - 1) for position in where]


def assert_gaps_are_void_leaves(components: Components) -> list[int]:
    skipped = gaps(components)
    assert skipped, "no save spent a position"
    assert tree_size(components) == positions(components)[-1]  # one leaf per position, gaps too
    assert leaves_at(components, skipped) == [reference_void_leaf(p) for p in skipped]
    report = verify(components)
    assert report.ok and report.events_verified == len(positions(components)), report
    return skipped


def with_a_gap(components: Components) -> int:
    """A save refused on its own (its second event's slot is taken), then one that commits."""
    recorder = components.identity.recorder
    taken = uuid4()
    recorder.insert_events([probe(taken, 1)])
    with pytest.raises(IntegrityError):
        recorder.insert_events([probe(uuid4(), 1), probe(taken, 1)])
    recorder.insert_events([probe(uuid4(), 1)])
    (gap, *_) = assert_gaps_are_void_leaves(components)
    return gap


def test_a_save_refused_on_its_own_leaves_void_leaves(postgres: Components) -> None:
    with_a_gap(postgres)


def test_a_save_refused_inside_a_group_leaves_void_leaves_between_its_neighbours(
    postgres: Components, pg_database: str
) -> None:
    recorder = postgres.identity.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    taken = uuid4()
    recorder.insert_events([probe(taken, 1)])
    groups = GroupSizes(recorder)
    outcomes: dict[int, Any] = {}

    def save(index: int, events: list[StoredEvent]) -> None:
        try:
            outcomes[index] = recorder.insert_events(events)
        except Exception as error:  # asserted on below
            outcomes[index] = error

    member_saves = [[probe(uuid4(), 1)], [probe(uuid4(), 1), probe(taken, 1)], [probe(uuid4(), 1)]]
    with table_locked(pg_database):  # the leader waits for the lock; the others queue into one group
        leader = threading.Thread(target=save, args=(-1, [probe(uuid4(), 1)]))
        leader.start()
        wait_until(lambda: recorder._leading and not recorder._queue)
        members = []
        for index, events in enumerate(member_saves):
            members.append(threading.Thread(target=save, args=(index, events)))
            members[-1].start()
            wait_until(lambda: len(recorder._queue) == len(members))
    for thread in [leader, *members]:
        thread.join(timeout=30)
    assert groups.sizes == [1, 3]
    assert isinstance(outcomes[1], IntegrityError)
    skipped = assert_gaps_are_void_leaves(postgres)
    # Inside the group's extension: its one INSERT's positions (rolled back when a member failed),
    # then the failed member's own, all between the leader's and the last member's.
    assert outcomes[-1][0] < min(skipped) <= max(skipped) < outcomes[2][0]
    assert outcomes[0][0] < outcomes[2][0]


def test_an_event_slipped_into_a_gap_is_found_there(postgres: Components) -> None:
    """Whoever can INSERT can choose the position: the gap's leaf says no event is there."""
    gap = with_a_gap(postgres)
    with writing(postgres.engine) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO identity_events"
                " (notification_id, originator_id, originator_version, topic, state) "
                "SELECT :gap, originator_id, originator_version + 1000, topic, state "
                "FROM identity_events WHERE notification_id = 1"
            ),
            {"gap": gap},
        )
    report = verify(postgres)
    assert not report.ok and report.first_bad_position == gap
    assert "differs from the one appended" in (report.reason or "")


def test_a_forged_void_leaf_is_found(postgres: Components) -> None:
    gap = with_a_gap(postgres)
    with as_owner(postgres) as conn:
        conn.execute(
            sa.text("UPDATE audit_tree_nodes SET hash = :forged WHERE level = 0 AND idx = :idx"),
            {"forged": reference_void_leaf(gap + 1), "idx": gap - 1},
        )
    report = verify(postgres)
    assert not report.ok and report.first_bad_position == gap
