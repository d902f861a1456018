"""An event is a leaf from the moment it commits (issue 11, attack 5): no sealer, no lag, nothing a
copy of the database could catch outside the tree. At every instant a reader sees as many leaves
as the highest committed position, however many threads and processes write; an event altered
the moment its command returned, before any checkpoint exists, is found; an event inserted into
the events table around the tree (attack 4: anyone who can INSERT) is named."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from eventstore.database import writing
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from tests.conftest import FAST_ARGON2, settings_for
from tests.integration.helpers import register, user_context
from tests.integration.merkle_attacks import (
    Watcher,
    checkpoint_sizes,
    events_sql,
    make_superuser,
    position_of,
    positions,
    tree_size,
    verify,
)
from tests.integration.test_concurrency import race

THREADS = 6
USERS_PER_THREAD = 5


def test_an_event_altered_the_moment_it_committed_is_found(components: Components) -> None:
    """The old sealer sealed after commit: an event changed in between was sealed as changed."""
    register(components.identity, "alice")
    mallory = register(components.identity, "mallory")
    assert tree_size(components) == mallory.position == components.identity.head_position()
    target = position_of(components, mallory.id, 1)
    make_superuser(components, target)
    assert checkpoint_sizes(components) == []  # nothing was signed: the tree alone finds it
    report = verify(components)
    assert not report.ok and report.first_bad_position == target
    assert "differs from the one appended" in (report.reason or "")


def write_users(identity_of: Components, prefix: str, count: int) -> None:
    identity = identity_of.identity
    for n in range(count):
        user = register(identity, f"{prefix}u{n}")
        with user_context(user.id):
            identity.update_user(user.id, full_name=f"{prefix} {n}")


def assert_every_event_is_a_leaf(components: Components, watcher: Watcher) -> None:
    assert watcher.behind() == []
    stored = positions(components)
    assert tree_size(components) == stored[-1] == components.identity.head_position()
    report = verify(components)
    assert report.ok and report.events_verified == len(stored), report


def test_no_committed_event_is_ever_outside_the_tree_while_threads_write(components: Components) -> None:
    with Watcher(components) as watcher:
        outcomes = race(lambda i: write_users(components, f"t{i}", USERS_PER_THREAD), THREADS)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert_every_event_is_a_leaf(components, watcher)


def _write_from_another_process(url: str, data_dir: str, prefix: str, count: int) -> None:
    settings = settings_for(url, Path(data_dir), LEDGERLINE_POOL_SIZE="2")
    other = build(settings, passwords=Passwords(FAST_ARGON2))
    try:
        write_users(other, prefix, count)
    finally:
        other.close()


def test_no_committed_event_is_ever_outside_the_tree_while_two_processes_write(
    database_url: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    """Each process keeps its own border of the tree; each must take in the other's leaves."""
    components = build(settings_for(database_url, tmp_path), init=True, passwords=fast_passwords)
    child_users = 3 * USERS_PER_THREAD
    try:
        register(components.identity, "root")
        child = multiprocessing.get_context("spawn").Process(
            target=_write_from_another_process, args=(database_url, str(tmp_path), "p", child_users)
        )
        last_own: list[int] = []

        def write_while_the_child_runs(i: int) -> None:
            n = 0
            while (child.is_alive() or n < USERS_PER_THREAD) and n < 200:
                last_own.append(register(components.identity, f"t{i}u{n}").position)
                n += 1

        with Watcher(components) as watcher:
            child.start()
            outcomes = race(write_while_the_child_runs, 3)
            child.join(timeout=120)
        assert child.exitcode == 0
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        child_first, child_last = (components.identity.find_user_id(f"pu{n}") for n in (0, child_users - 1))
        assert child_first is not None and child_last is not None
        assert position_of(components, child_first, 1) < max(last_own), "the processes did not write at once"
        assert_every_event_is_a_leaf(components, watcher)
    finally:
        components.close()


FORGED = (  # a copy of an event under a new version: the store assigns the next position
    "INSERT INTO {events} (originator_id, originator_version, topic, state) "
    "SELECT originator_id, originator_version + 1000, topic, state FROM {events} WHERE {pos} = :src"
)


def test_an_event_inserted_around_the_tree_is_named(components: Components) -> None:
    """An INSERT needs no owner's rights (the runtime role has it); its event is no leaf."""
    register(components.identity, "alice")
    database = components.settings.database
    with writing(components.engine) as conn:
        conn.execute(events_sql(database, FORGED), {"src": 1})
    forged = positions(components)[-1]
    assert tree_size(components) == forged - 1
    report = verify(components)
    assert not report.ok and report.first_bad_position == forged
    assert "not in the tree" in (report.reason or "")
    # The next append covers its own events, and leaves the forged position a void leaf.
    register(components.identity, "bob")
    assert tree_size(components) == components.identity.head_position() > forged
    report = verify(components)
    assert not report.ok and report.first_bad_position == forged
