"""The tamper-evident chain: sealing in position order, signed checkpoints, and verification that
finds the first position where a database administrator changed, removed, swapped or inserted an
event, or changed a seal (the append-only triggers are dropped first, as such a person could)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from eventstore.audit_chain.records import GENESIS, iter_records, next_seal
from eventstore.audit_chain.sealer import ChainSealer
from eventstore.audit_chain.signing import Signer
from eventstore.audit_chain.verify import ChainReport, verify_chain
from ledgerline.bootstrap import Components
from tests.integration.helpers import register


def sealer_of(components: Components, every: int = 5) -> ChainSealer:
    return ChainSealer(
        components.engine,
        components.settings.database,
        components.signer,
        checkpoint_events=every,
        batch_size=7,
    )


def verify(components: Components) -> ChainReport:
    trusted = frozenset({components.signer.public_key})
    return verify_chain(components.engine, components.settings.database, trusted)


@pytest.fixture
def sealed(components: Components) -> Iterator[Components]:
    """A store with a few users and changes, every event sealed, checkpoints every 5 events."""
    identity = components.identity
    for name in ("alice", "bob", "carol"):
        user = register(identity, name)
        identity.update_user(user.id, full_name=f"{name} Changed")
        identity.issue_api_key(user.id, name="ci", permissions={"users:read": True})
    sealer_of(components).catch_up()
    yield components


def checkpoints(components: Components) -> list[int]:
    with components.engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT position FROM audit_checkpoints ORDER BY position")).scalars()
        )


def positions(components: Components) -> list[int]:
    with components.engine.connect() as conn:
        return [r.position for r in iter_records(conn, components.settings.database)]


def admin_sql(components: Components, *statements: str, **params: object) -> None:
    """Run as a database administrator would: with the append-only triggers out of the way."""
    database = components.settings.database
    with components.engine.begin() as conn:
        for table in (database.events_table, "audit_seals", "audit_checkpoints"):
            drop_triggers(conn, table, database.is_sqlite)
        for statement in statements:
            conn.execute(
                sa.text(statement.format(events=database.events_table, pos=position_column(components))),
                params,
            )


def drop_triggers(conn: Connection, table: str, sqlite: bool) -> None:
    if sqlite:
        conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
        conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
    else:
        conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}"))


def position_column(components: Components) -> str:
    return "rowid" if components.settings.database.is_sqlite else "notification_id"


def test_every_event_is_sealed_in_order_and_verifies(sealed: Components) -> None:
    report = verify(sealed)
    stored = positions(sealed)
    assert report.ok and report.first_bad_position is None
    assert report.events_verified == len(stored) and report.verified_through_position == stored[-1]
    assert report.checkpoints_verified == len(checkpoints(sealed)) >= 2
    with sealed.engine.connect() as conn:
        seal = GENESIS
        for record in iter_records(conn, sealed.settings.database):
            seal = next_seal(seal, record.digest())
    assert report.head_hash == seal.hex()
    assert report.unsealed_events == 0 and report.untrusted_keys == []


def test_sealing_continues_from_the_head_and_reports_unsealed_events(sealed: Components) -> None:
    register(sealed.identity, "dave")
    report = verify(sealed)
    assert report.ok and report.unsealed_events > 0
    assert sealer_of(sealed).catch_up() == report.unsealed_events
    after = verify(sealed)
    assert (
        after.ok and after.unsealed_events == 0 and after.verified_through_position == positions(sealed)[-1]
    )


@pytest.mark.parametrize("table", ["audit_seals", "audit_checkpoints"])
@pytest.mark.parametrize("statement", ["UPDATE {table} SET position = position", "DELETE FROM {table}"])
def test_seals_and_checkpoints_are_append_only(sealed: Components, table: str, statement: str) -> None:
    with sealed.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(sa.text(statement.format(table=table)))


def test_a_changed_payload_byte_is_found_at_its_position(sealed: Components) -> None:
    target = positions(sealed)[7]
    if sealed.settings.database.is_sqlite:
        change = (
            "UPDATE {events} SET state = CAST(replace(CAST(state AS TEXT), '{{', '[') AS BLOB) "
            "WHERE {pos} = :p"
        )
    else:
        change = "UPDATE {events} SET state = set_byte(state, 0, get_byte(state, 0) # 1) WHERE {pos} = :p"
    admin_sql(sealed, change, p=target)
    report = verify(sealed)
    assert not report.ok and report.first_bad_position == target
    assert "differs" in (report.reason or "")
    assert report.verified_through_position == positions(sealed)[6]


def test_a_deleted_event_is_found_at_its_position(sealed: Components) -> None:
    target = positions(sealed)[4]
    admin_sql(sealed, "DELETE FROM {events} WHERE {pos} = :p", p=target)
    report = verify(sealed)
    assert not report.ok and report.first_bad_position == target and "missing" in (report.reason or "")


def test_a_deleted_event_and_its_seal_break_the_next_link(sealed: Components) -> None:
    stored = positions(sealed)
    admin_sql(
        sealed,
        "DELETE FROM {events} WHERE {pos} = :p",
        "DELETE FROM audit_seals WHERE position = :p",
        p=stored[4],
    )
    report = verify(sealed)
    assert not report.ok and report.first_bad_position == stored[5]


def test_two_swapped_events_are_found_at_the_first(sealed: Components) -> None:
    stored = positions(sealed)
    first, second = stored[3], stored[9]
    admin_sql(
        sealed,
        "UPDATE {events} SET {pos} = -1 WHERE {pos} = :a",
        "UPDATE {events} SET {pos} = :a WHERE {pos} = :b",
        "UPDATE {events} SET {pos} = :b WHERE {pos} = -1",
        a=first,
        b=second,
    )
    report = verify(sealed)
    assert not report.ok and report.first_bad_position == first


def test_an_event_inserted_in_the_middle_is_found_where_it_went_in(sealed: Components) -> None:
    stored = positions(sealed)
    target = stored[5]
    admin_sql(
        sealed,
        "UPDATE {events} SET {pos} = {pos} + 1000000 WHERE {pos} >= :p",
        "UPDATE {events} SET {pos} = {pos} - 999999 WHERE {pos} >= 1000000",
        "INSERT INTO {events} ({pos}, originator_id, originator_version, topic, state) "
        "SELECT :p, originator_id, originator_version + 1000, topic, state FROM {events} WHERE {pos} = :src",
        p=target,
        src=stored[0],
    )
    report = verify(sealed)
    assert not report.ok and report.first_bad_position == target


FORGED = (  # a copy of another event, under a new version, at position {at}
    "INSERT INTO {{events}} ({{pos}}, originator_id, originator_version, topic, state) "
    "SELECT {at}, originator_id, originator_version + {version}, topic, state "
    "FROM {{events}} WHERE {{pos}} = :src"
)


def test_an_event_inserted_into_a_gap_is_found(sealed: Components) -> None:
    stored = positions(sealed)
    gap = stored[-1] + 1
    admin_sql(
        sealed,
        FORGED.format(at=":gap + 1", version="1000"),
        gap=gap,
        src=stored[0],
    )
    sealer_of(sealed).catch_up()  # the store now has a gap at `gap`, sealed past
    assert verify(sealed).ok
    admin_sql(
        sealed,
        FORGED.format(at=":gap", version="2000"),
        gap=gap,
        src=stored[0],
    )
    report = verify(sealed)
    assert not report.ok and report.first_bad_position == gap and "not in the chain" in (report.reason or "")


def test_a_changed_seal_is_found_at_its_position(sealed: Components) -> None:
    target = positions(sealed)[6]
    admin_sql(sealed, "UPDATE audit_seals SET seal = record_digest WHERE position = :p", p=target)
    report = verify(sealed)
    assert not report.ok and report.first_bad_position == target and "seal" in (report.reason or "")


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(sealed: Components) -> None:
    """Whoever changes an event and recomputes every later seal still cannot sign."""
    stored = positions(sealed)
    target = stored[7]
    admin_sql(
        sealed,
        "UPDATE {events} SET topic = topic || 'x' WHERE {pos} = :p",
        "DELETE FROM audit_seals WHERE position >= :p",
        p=target,
    )
    database = sealed.settings.database
    with sealed.engine.begin() as conn:  # recompute the seals from the changed record on
        previous = conn.execute(
            sa.text("SELECT seal FROM audit_seals ORDER BY position DESC LIMIT 1")
        ).scalar_one()
        for record in iter_records(conn, database, after=stored[6]):
            digest = record.digest()
            previous = next_seal(previous, digest)
            conn.execute(
                sa.text("INSERT INTO audit_seals (position, record_digest, seal) VALUES (:p, :d, :s)"),
                {"p": record.position, "d": digest, "s": previous},
            )
    report = verify(sealed)
    signed_before = max(p for p in checkpoints(sealed) if p < target)
    signed_after = min(p for p in checkpoints(sealed) if p >= target)
    assert not report.ok and report.first_bad_position == signed_after
    assert f"rewritten after position {signed_before}" in (report.reason or "")


def test_a_removed_tail_is_caught_by_the_last_checkpoint(sealed: Components) -> None:
    cut = checkpoints(sealed)[-1] - 1  # events after the last checkpoint are covered by the next one
    admin_sql(
        sealed,
        "DELETE FROM {events} WHERE {pos} >= :p",
        "DELETE FROM audit_seals WHERE position >= :p",
        p=cut,
    )
    report = verify(sealed)
    assert not report.ok and "removed" in (report.reason or "")


def test_a_checkpoint_signed_with_another_key_is_refused(sealed: Components) -> None:
    forger = ChainSealer(
        sealed.engine, sealed.settings.database, Signer(bytes(range(32))), checkpoint_events=1
    )
    register(sealed.identity, "mallory")
    forger.catch_up()
    report = verify(sealed)
    assert not report.ok and "unknown key" in (report.reason or "")
    untrusting = verify_chain(sealed.engine, sealed.settings.database)
    assert untrusting.ok and len(untrusting.untrusted_keys) == 2


def test_erasure_leaves_the_chain_and_earlier_checkpoints_valid(sealed: Components) -> None:
    alice = sealed.identity.find_user_id("alice")
    assert alice is not None
    sealed.identity.erase_user(alice)
    sealer_of(sealed).catch_up()
    report = verify(sealed)
    assert report.ok and report.unsealed_events == 0


def test_concurrent_writers_never_leave_an_event_behind_the_sealed_head(components: Components) -> None:
    """The sealer follows while 6 threads write: every event ends up sealed, in order."""
    stop = threading.Event()
    sealer = sealer_of(components, every=50)
    errors: list[BaseException] = []

    def keep_sealing() -> None:
        while not stop.is_set():
            try:
                sealer.run_batch()
            except Exception as error:  # a racing insert would surface here
                errors.append(error)

    def write(worker: int) -> None:
        for i in range(8):
            user = register(components.identity, f"w{worker}u{i}")
            components.identity.update_user(user.id, full_name="x")

    follower = threading.Thread(target=keep_sealing)
    follower.start()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    follower.join()
    sealer.catch_up()
    report = verify(components)
    assert errors == []
    assert report.ok and report.unsealed_events == 0 and report.events_verified == len(positions(components))


def test_an_aggregate_id_respelled_or_replaced_is_found(sealed: Components) -> None:
    """SQLite stores ids as text: another spelling of the same id is another record."""
    target = positions(sealed)[5]
    if sealed.settings.database.is_sqlite:
        change = "UPDATE {events} SET originator_id = upper(originator_id) WHERE {pos} = :p"
    else:
        change = "UPDATE {events} SET originator_id = '00000000-0000-0000-0000-000000000001' WHERE {pos} = :p"
    admin_sql(sealed, change, p=target)
    report = verify(sealed)
    assert not report.ok and report.first_bad_position == target
