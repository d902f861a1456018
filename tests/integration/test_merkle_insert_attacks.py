"""What whoever holds INSERT on the evidence (the runtime role) can still try, and what stops it
(an attacker's pass over issue 11): a node planted past the tree's end, a checkpoint row copied
to a size the log never had or forged at its current size, audit rows deleted from the tail, a
forged value that equals the genuine one only in Python. And `verify` on a live log raises no
false alarm while checkpoints are signed under it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from eventstore.audit_chain.checkpoints import Checkpointer, checkpoint_now
from eventstore.database import writing
from ledgerline.bootstrap import Components
from projections.audit_log.tables import define_audit_log
from projections.catalog import live_generation
from projections.read_side import chain_status
from tests.integration.helpers import project_all, register, user_context
from tests.integration.merkle_attacks import sign, tree_size, verify

INSERT_CHECKPOINT = sa.text(
    "INSERT INTO audit_tree_checkpoints (tree_size, root_hash, signed_at, note) VALUES (:s, :r, :t, :n)"
)


def _users(components: Components, count: int, prefix: str = "u") -> None:
    for n in range(count):
        register(components.identity, f"{prefix}{n}")


def test_a_node_planted_past_the_trees_end_is_named_by_verify(components: Components) -> None:
    _users(components, 5)
    size = tree_size(components)
    assert verify(components).ok
    planted = (2, (size + 40) // 4)  # a level-2 node the tree reaches after ~40 more events
    with writing(components.engine) as conn:  # a plain INSERT: what the runtime role may do
        conn.execute(
            sa.text("INSERT INTO audit_tree_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
            {"l": planted[0], "i": planted[1], "h": bytes(32)},
        )
    report = verify(components)
    assert not report.ok
    assert f"({planted[0]}/{planted[1]})" in (report.reason or "") and "past its last leaf" in (
        report.reason or ""
    )
    assert report.first_bad_position == planted[1] * 4 + 1


def test_a_checkpoint_row_past_the_log_is_never_served_and_never_stops_the_signing(
    components: Components,
) -> None:
    _users(components, 3)
    early = sign(components)
    _users(components, 3, "v")
    with writing(components.engine) as conn:  # a genuine old note, copied to a size never reached
        conn.execute(
            INSERT_CHECKPOINT,
            {"s": 1_000_000_000, "r": early.root_hash, "t": datetime.now(UTC), "n": early.note},
        )
    size = tree_size(components)
    served = checkpoint_now(components.engine, components.checkpoint_keys)
    assert served.size == size and components.checkpoint_keys.open(served.note).size == size

    _users(components, 2, "w")
    signed = Checkpointer(components.engine, components.checkpoint_keys, interval=0).run_once()
    assert signed is not None and signed.size == tree_size(components)
    status = chain_status(components.engine, components.identity)
    assert status.position == signed.size  # the forged row does not hide a stalled checkpointer

    report = verify(components)
    assert not report.ok and "1000000000" in (report.reason or "")


def test_a_checkpoint_row_forged_at_the_current_size_is_replaced_by_a_genuine_note(
    components: Components,
) -> None:
    _users(components, 4)
    early = sign(components)
    _users(components, 2, "v")
    size = tree_size(components)
    with writing(components.engine) as conn:  # claims the current size with an older note
        conn.execute(
            INSERT_CHECKPOINT, {"s": size, "r": early.root_hash, "t": datetime.now(UTC), "n": early.note}
        )
    served = checkpoint_now(components.engine, components.checkpoint_keys)
    opened = components.checkpoint_keys.open(served.note)
    assert (opened.size, opened.root_hash) == (size, served.root_hash) and served.note != early.note
    report = verify(components)
    assert not report.ok and report.first_bad_position == size


def test_a_checkpoint_dated_in_the_future_does_not_postpone_the_next(components: Components) -> None:
    _users(components, 2)
    first = sign(components)
    _users(components, 2, "v")
    checkpointer = Checkpointer(components.engine, components.checkpoint_keys, interval=60)
    with writing(components.engine) as conn:
        size = tree_size(components)
        conn.execute(
            INSERT_CHECKPOINT,
            {
                "s": size - 1,
                "r": first.root_hash,
                "t": datetime.now(UTC) + timedelta(days=365),
                "n": first.note,
            },
        )
    signed = checkpointer.run_once()
    assert signed is not None and signed.size == size


def test_verify_raises_no_false_alarm_while_checkpoints_are_signed_under_it(components: Components) -> None:
    _users(components, 20)
    stop = threading.Event()
    checkpointer = Checkpointer(components.engine, components.checkpoint_keys, interval=0)

    def write_and_sign() -> None:
        n = 0
        while not stop.is_set():
            register(components.identity, f"live{n}")
            checkpointer.run_once()
            n += 1

    writer = threading.Thread(target=write_and_sign)
    writer.start()
    try:
        reports = [verify(components) for _ in range(8)]
    finally:
        stop.set()
        writer.join()
    assert [r.reason for r in reports if not r.ok] == []
    assert verify(components).ok


def test_a_checkpoint_signed_just_after_the_walk_read_its_last_event_is_no_removal(
    components: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministically, the moment the live race above needs: events commit and a checkpoint
    is signed over them after the walk read its last page but before it looked for more
    checkpoints."""
    from eventstore.audit_chain import verify as verify_module

    _users(components, 3)
    sign(components)
    read_records = verify_module.iter_records

    def then_more(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        yield from read_records(*args, **kwargs)  # type: ignore[arg-type]
        register(components.identity, "late")
        sign(components)

    monkeypatch.setattr(verify_module, "iter_records", then_more)
    report = verify(components)
    assert report.ok, report.reason


def _audit_table(components: Components) -> sa.Table:
    with components.engine.connect() as conn:
        return define_audit_log(sa.MetaData(), live_generation(conn, "audit_log")[0])


def test_audit_rows_deleted_from_the_tail_are_reported(components: Components) -> None:
    _users(components, 6)
    project_all(components)
    table = _audit_table(components)
    evidence = _evidence(components)
    assert evidence.verify(components.engine).forged == 0
    with writing(components.engine) as conn:
        newest = list(
            conn.execute(sa.select(table.c.position).order_by(table.c.position.desc()).limit(2)).scalars()
        )
        conn.execute(table.delete().where(table.c.position.in_(newest)))
    report = evidence.verify(components.engine)
    assert sorted(newest) == [p for p in report.forged_positions if p in newest] and report.forged >= 2

    with writing(components.engine) as conn:  # every row gone
        conn.execute(table.delete())
    assert evidence.verify(components.engine).forged >= 6


def test_a_value_forged_to_an_equal_number_is_still_forged(components: Components) -> None:
    alice = register(components.identity, "alice")
    with user_context(alice.id):
        components.identity.update_user(alice.id, full_name="Alice A")
    project_all(components)
    table = _audit_table(components)
    with writing(components.engine) as conn:
        row = conn.execute(
            sa.select(table.c.position, table.c.changes).where(table.c.action == "user.registered").limit(1)
        ).one()
        changes = dict(row.changes)
        flags = [name for name, value in changes.items() if isinstance(value, bool)]
        assert flags, changes
        changes[flags[0]] = int(changes[flags[0]]) + 0.0  # false -> 0.0: equal in Python, not in JSON
        conn.execute(table.update().where(table.c.position == row.position).values(changes=changes))
    report = _evidence(components).verify(components.engine)
    assert report.forged_positions == [row.position]


def _evidence(components: Components):  # type: ignore[no-untyped-def]
    from eventstore.personal_data import Sealer
    from projections.audit_log.evidence import AuditEvidence

    identity = components.identity
    return AuditEvidence(identity.mapper, components.settings.database, Sealer(identity.data_keys))
