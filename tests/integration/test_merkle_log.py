"""The log's RFC 9162 Merkle tree as an attacker holding the table owner's rights meets it (issue 11,
attacks 1 and 2), on both stores: the append-only triggers out of the way (PostgreSQL's
replication mode as the superuser test role, SQLite's triggers dropped), events rewritten or
removed, the tree's nodes recomputed to match, checkpoints deleted and re-signed. ``verify``
names the first bad position from the tree alone; what an owner can make consistent again is
caught by a signed checkpoint, stored or kept by an auditor (``since``). Key rotation: retired
keys keep their checkpoints verifying only while the auditor trusts them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from eventstore.audit_chain.checkpoints import SignedCheckpoint, tree_checkpoints
from eventstore.audit_chain.note import Checkpoint, NoteSigner, sign_checkpoint
from eventstore.audit_chain.tree import root_at
from eventstore.database import writing
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from tests.conftest import settings_for
from tests.integration.helpers import register
from tests.integration.merkle_attacks import (
    as_owner,
    checkpoint_sizes,
    events_sql,
    kept,
    make_superuser,
    position_of,
    positions,
    reference_leaves,
    reference_root,
    rewrite_tree_from,
    sign,
    tree_size,
    truncate,
    verify,
)


@dataclass
class Log:
    components: Components
    mallory: UUID
    target: int  # mallory's User.Registered: the event the attacks rewrite
    signed: list[SignedCheckpoint]  # three checkpoints: before the target, over it, after it


@pytest.fixture
def log(components: Components) -> Log:
    """Users, changes and keys, a checkpoint before mallory registers, one over her events, one
    later, and a few events after the last checkpoint (signed over by none)."""
    identity = components.identity
    signed = []
    for name in ("alice", "bob"):
        user = register(identity, name)
        identity.update_user(user.id, full_name=f"{name} Changed")
    signed.append(sign(components))
    mallory = register(identity, "mallory")
    identity.update_user(mallory.id, full_name="Mallory Changed")
    signed.append(sign(components))
    for name in ("carol", "dave"):
        user = register(identity, name)
        identity.issue_api_key(user.id, name="ci", permissions={"users:read": True})
    signed.append(sign(components))
    register(identity, "erin")
    target = position_of(components, mallory.id, 1)
    assert signed[0].size < target <= signed[1].size < signed[2].size < tree_size(components)
    return Log(components, mallory.id, target, signed)


def test_every_event_is_a_leaf_and_the_checkpoints_sign_its_roots(log: Log) -> None:
    components = log.components
    report = verify(components)
    stored = positions(components)
    assert report.ok and report.first_bad_position is None and report.reason is None
    assert report.tree_size == tree_size(components) == report.verified_through_position == stored[-1]
    assert report.events_verified == len(stored)
    leaves = reference_leaves(components)  # the documented layout, hashed without production code
    with components.engine.connect() as conn:
        stored_leaves = conn.execute(
            sa.text("SELECT hash FROM audit_tree_nodes WHERE level = 0 ORDER BY idx")
        )
        assert [bytes(leaf) for leaf in stored_leaves.scalars()] == leaves
    assert report.head_hash == reference_root(leaves).hex()
    assert report.checkpoints_verified == len(checkpoint_sizes(components)) == 3
    for signed in log.signed:
        assert kept(components, signed).root_hash == signed.root_hash == reference_root(leaves[: signed.size])


def test_a_rewritten_payload_is_found_at_its_position(log: Log, fast_passwords: Passwords) -> None:
    components = log.components
    make_superuser(components, log.target)
    rebuilt = build(components.settings, passwords=fast_passwords)
    try:  # the rewrite is real: replayed from the events, mallory is now an admin
        assert rebuilt.identity.get_user(log.mallory).is_superuser is True
    finally:
        rebuilt.close()
    report = verify(components)
    assert not report.ok and report.first_bad_position == log.target
    assert "differs from the one appended" in (report.reason or "")
    assert report.verified_through_position < log.target


def test_a_rewrite_with_every_later_node_recomputed_is_caught_by_the_stored_checkpoints(log: Log) -> None:
    components = log.components
    make_superuser(components, log.target)
    with as_owner(components) as conn:
        assert rewrite_tree_from(conn, components.settings.database, log.target) > 0
    report = verify(components)
    # Every node now matches the events; the first checkpoint signed over the target does not.
    assert not report.ok and report.first_bad_position == log.signed[1].size
    assert "rewritten" in (report.reason or "")
    assert report.verified_through_position == log.signed[0].size
    assert not verify(components, since=kept(components, log.signed[1])).ok


def test_a_rewrite_with_its_checkpoints_replaced_is_caught_by_a_kept_checkpoint(log: Log) -> None:
    """The owner rewrites the event, every later node, and the checkpoints from the target on; the
    running checkpointer then signs the forged tree with the genuine key. The database is
    consistent again (decision 0012, "what it does not stop"): the checkpoint an auditor kept is
    what catches it, and one kept from before the rewrite still holds."""
    components = log.components
    before, over = kept(components, log.signed[0]), kept(components, log.signed[1])
    make_superuser(components, log.target)
    with as_owner(components) as conn:
        rewrite_tree_from(conn, components.settings.database, log.target)
        conn.execute(sa.delete(tree_checkpoints).where(tree_checkpoints.c.tree_size >= log.target))
    resigned = sign(components)
    assert resigned.size == tree_size(components) and resigned.root_hash != log.signed[2].root_hash
    assert verify(components).ok  # the forgery is complete as far as the database goes
    report = verify(components, since=over)
    assert not report.ok and "no longer extends the kept checkpoint" in (report.reason or "")
    assert verify(components, since=before).ok


def test_an_event_removed_behind_a_void_leaf_is_caught_by_the_checkpoint_over_it(log: Log) -> None:
    """Deleting an event and recomputing the tree makes its leaf a void one (as if a save had been
    rolled back there): only a signed root remembers the event."""
    components = log.components
    database = components.settings.database
    with as_owner(components) as conn:
        conn.execute(events_sql(database, "DELETE FROM {events} WHERE {pos} = :p"), {"p": log.target})
        rewrite_tree_from(conn, database, log.target)
    report = verify(components)
    assert not report.ok and report.first_bad_position == log.signed[1].size
    assert "rewritten" in (report.reason or "")


def test_a_removed_event_whose_leaf_stays_is_found_at_its_position(log: Log) -> None:
    components = log.components
    with as_owner(components) as conn:
        conn.execute(
            events_sql(components.settings.database, "DELETE FROM {events} WHERE {pos} = :p"),
            {"p": log.target},
        )
    report = verify(components)
    assert not report.ok and report.first_bad_position == log.target
    assert "differs from the one appended" in (report.reason or "")


def test_a_cut_tail_with_its_nodes_is_caught_by_the_checkpoint_signed_over_it(log: Log) -> None:
    components = log.components
    keep = log.signed[1].size - 2
    truncate(components, keep, nodes=True, checkpoints=False)
    assert tree_size(components) == positions(components)[-1] == keep
    report = verify(components)
    assert not report.ok and report.first_bad_position == keep + 1
    assert "events were removed" in (report.reason or "")


def test_a_cut_tail_with_its_nodes_and_checkpoints_is_caught_by_a_kept_checkpoint(log: Log) -> None:
    components = log.components
    before, over = kept(components, log.signed[0]), kept(components, log.signed[2])
    keep = log.signed[1].size - 2
    truncate(components, keep, nodes=True, checkpoints=True)
    assert checkpoint_sizes(components) == [log.signed[0].size]
    assert verify(components).ok  # nothing left in the database signed over the removed events
    report = verify(components, since=over)
    assert not report.ok and report.first_bad_position == keep + 1
    assert "truncated" in (report.reason or "")
    assert verify(components, since=before).ok


def test_removed_events_whose_leaves_stay_are_found_without_any_checkpoint(log: Log) -> None:
    """The newest events, which no checkpoint covers yet: their leaves still count them."""
    components = log.components
    keep = positions(components)[-3]
    assert keep > log.signed[-1].size
    truncate(components, keep, nodes=False, checkpoints=False)
    report = verify(components)
    assert not report.ok and report.first_bad_position == keep + 1
    assert "events were removed" in (report.reason or "")


# ---- key rotation ------------------------------------------------------------------------------

OLD_KEY, NEW_KEY = "22" * 32, "33" * 32


def test_checkpoints_of_a_retired_key_verify_only_while_the_key_is_trusted(
    database_url: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    def built(**extra: str) -> Components:
        return build(settings_for(database_url, tmp_path, **extra), init=True, passwords=fast_passwords)

    first = built(LEDGERLINE_AUDIT_SIGNING_KEY=OLD_KEY)
    try:
        register(first.identity, "alice")
        old = sign(first)
        old_vkey = first.checkpoint_keys.signer.verifier_key.encode()
    finally:
        first.close()
    rotated = built(LEDGERLINE_AUDIT_SIGNING_KEY=NEW_KEY, LEDGERLINE_AUDIT_RETIRED_KEYS=old_vkey)
    try:
        assert rotated.checkpoint_keys.signer.verifier_key.encode() != old_vkey
        register(rotated.identity, "bob")
        new = sign(rotated)
        report = verify(rotated)
        assert report.ok and report.checkpoints_verified == 2 and report.last_checkpoint_size == new.size
        assert verify(rotated, since=kept(rotated, old)).ok
    finally:
        rotated.close()
    forgetful = built(LEDGERLINE_AUDIT_SIGNING_KEY=NEW_KEY)  # the retired key left out
    try:
        report = verify(forgetful)
        assert not report.ok and report.first_bad_position == old.size
        assert f"checkpoint of size {old.size}" in (report.reason or "")
    finally:
        forgetful.close()


def test_a_checkpoint_signed_with_a_key_the_auditor_does_not_trust_fails(log: Log) -> None:
    """Someone with write access stores a checkpoint under the log's name, signed with a key of
    their own: refused even over the genuine root."""
    components = log.components
    forger = NoteSigner(components.checkpoint_keys.origin, bytes(range(32)))
    size = tree_size(components)
    with writing(components.engine) as conn:
        root = root_at(conn, size)
        conn.execute(
            sa.insert(tree_checkpoints).values(
                tree_size=size,
                root_hash=root,
                signed_at=datetime.now(UTC),
                note=sign_checkpoint(Checkpoint(forger.name, size, root), [forger]),
            )
        )
    report = verify(components)
    assert not report.ok and report.first_bad_position == size
    assert f"checkpoint of size {size}" in (report.reason or "")
