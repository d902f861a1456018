"""Users in the event store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError

from domain.errors import (
    EmailTakenError,
    StateConflictError,
    UserDeletedError,
    UsernameTakenError,
    VersionMismatchError,
)
from domain.users import User
from ledgerline.bootstrap import Components
from tests.integration.helpers import events_of, register


def test_registered_user_reads_back_with_its_position(components: Components) -> None:
    identity = components.identity
    first = register(identity, "alice")
    second = register(identity, "bob", email="Bob@Example.COM")
    assert second.position > first.position >= 1
    bob = identity.get_user(second.id)
    assert (bob.username, bob.email_address, bob.is_active, bob.is_verified) == (
        "bob",
        "bob@example.com",
        True,
        False,
    )
    assert "$argon2id$" in bob.password_hash
    assert identity.find_user_id("BOB") == bob.id
    assert identity.find_user_id("bob@EXAMPLE.com") == bob.id
    assert identity.head_position() == second.position


def test_username_and_email_are_unique_ignoring_case(components: Components) -> None:
    identity = components.identity
    register(identity, "alice")
    with pytest.raises(UsernameTakenError):
        register(identity, "ALICE", email="other@example.com")
    with pytest.raises(EmailTakenError):
        register(identity, "alice2", email="Alice@Example.com")
    assert identity.find_user_id("alice2") is None  # the loser left nothing behind


def test_deleted_user_keeps_username_and_email_reserved(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    identity.delete_user(alice.id)
    with pytest.raises(UserDeletedError):
        identity.update_user(alice.id, full_name="New")
    with pytest.raises(UsernameTakenError):
        register(identity, "Alice", email="new@example.com")
    with pytest.raises(EmailTakenError):
        register(identity, "alice3", email="alice@example.com")
    identity.restore_user(alice.id)
    assert not identity.get_user(alice.id).is_deleted


def test_changing_email_frees_the_old_address(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    register(identity, "bob")
    with pytest.raises(EmailTakenError):
        identity.update_user(alice.id, email="BOB@example.com")
    identity.update_user(alice.id, email="alice@new.example")
    assert identity.get_user(alice.id).email_address == "alice@new.example"
    assert identity.find_user_id("alice@new.example") == alice.id
    carol = register(identity, "carol", email="alice@example.com")  # the old address is free
    assert identity.find_user_id("alice@example.com") == carol.id
    identity.update_user(alice.id, email="alice@example.org")
    with pytest.raises(EmailTakenError):
        identity.update_user(carol.id, email="Alice@Example.org")


def test_state_conflicts_are_refused_and_store_nothing(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    identity.verify_user(alice.id)
    head = identity.head_position()
    with pytest.raises(StateConflictError):
        identity.verify_user(alice.id)
    with pytest.raises(StateConflictError):
        identity.activate_user(alice.id)
    assert identity.head_position() == head


def test_two_writers_on_one_aggregate_one_conflict_nothing_lost(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    first, second = identity.get_user(alice.id), identity.get_user(alice.id)
    first.update_profile(full_name="First")
    second.deactivate()
    identity.save(first)
    with pytest.raises(IntegrityError):
        identity.save(second)  # same version: the store refuses the stale writer
    stored = identity.get_user(alice.id)
    assert (stored.version, stored.full_name and stored.full_name.value, stored.is_active) == (
        2,
        "First",
        True,
    )
    # A client naming the version it saw gets a precondition failure...
    with pytest.raises(VersionMismatchError):
        identity.update_user(alice.id, full_name="Stale", expected_version=1)
    # ...a command without one is retried on fresh state, so both changes are kept.
    identity.deactivate_user(alice.id)
    stored = identity.get_user(alice.id)
    assert stored.full_name is not None
    assert (stored.full_name.value, stored.is_active, stored.version) == ("First", False, 3)


def test_state_at_every_earlier_version_equals_what_it_was(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    seen: dict[int, tuple[object, ...]] = {}

    def remember() -> None:
        user = identity.get_user(alice.id)
        seen[user.version] = _state(user)

    remember()
    for n in range(60):  # past the snapshot interval (50): the rebuild starts from a snapshot
        identity.update_user(alice.id, full_name=f"Name {n}")
        if n % 7 == 0:
            identity.deactivate_user(alice.id)
            remember()
            identity.activate_user(alice.id)
        remember()
    assert len(seen) > 60
    for version, state in seen.items():
        assert _state(identity.get_user(alice.id, version=version)) == state
    assert [e.originator_version for e in events_of(identity, alice.id)] == list(range(1, max(seen) + 1))


def _state(user: User) -> tuple[object, ...]:
    return (
        user.version,
        user.full_name.value if user.full_name else None,
        user.is_active,
        user.email_address,
        user.modified_on,
    )


def test_verification_token_round_trip(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    token = identity.request_email_verification(alice.id).token
    stored = events_of(identity, alice.id)[-1]
    assert token not in repr(stored.__dict__)  # only the digest is stored
    with pytest.raises(Exception, match="invalid or expired"):
        identity.verify_user(alice.id, token=token + "x")
    identity.verify_user(alice.id, token=token)
    assert identity.get_user(alice.id).is_verified
