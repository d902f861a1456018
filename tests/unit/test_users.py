"""The User aggregate: every rule and every refusal, without a database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.application import project_aggregate

from domain.errors import (
    AccountLockedError,
    AuthenticationError,
    StateConflictError,
    UserDeletedError,
    UserErasedError,
    VerificationTokenError,
)
from domain.users import User
from domain.values import Lockout, PersonalData

LOCKOUT = Lockout(max_failures=5, seconds=900)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def register(**overrides: Any) -> User:
    fields: dict[str, Any] = {
        "user_id": uuid4(),
        "username": "alice",
        "email": "alice@example.com",
        "password_hash": "hash-1",
    }
    fields.update(overrides)
    return User.register(**fields)


def fresh_user(**overrides: Any) -> User:
    """A registered user whose creation event is already collected."""
    user = register(**overrides)
    user.collect_events()
    return user


def new_event_types(user: User) -> list[type]:
    return [type(event) for event in user.collect_events()]


# ---- register ---------------------------------------------------------------------------------


def test_register_stores_the_email_lower_cased_and_stripped() -> None:
    user_id = uuid4()
    user = register(user_id=user_id, username="Alice", email="  Alice.Smith@Example.COM ")

    assert user.id == user_id
    assert user.username == "Alice"
    assert user.email is not None
    assert user.email.value == "alice.smith@example.com"
    assert user.email.subject_id == user_id
    assert user.email_address == "alice.smith@example.com"


def test_a_registered_user_is_active_unverified_and_not_a_superuser() -> None:
    user = register()

    assert user.is_active is True
    assert user.is_verified is False
    assert user.verified_at is None
    assert user.is_superuser is False
    assert user.is_deleted is False
    assert user.is_erased is False
    assert user.full_name is None
    assert user.failed_login_count == 0
    assert user.locked_until is None
    assert user.version == 1
    assert new_event_types(user) == [User.Registered]


def test_register_with_full_name_and_superuser() -> None:
    user = register(full_name="Alice Smith", is_superuser=True)

    assert user.is_superuser is True
    assert user.full_name is not None
    assert user.full_name.value == "Alice Smith"
    assert user.full_name.subject_id == user.id
    (event,) = user.collect_events()
    assert isinstance(event, User.Registered)
    assert event.password_hash == PersonalData(user.id, "hash-1")  # sealed with her data key
    assert event.is_superuser is True


# ---- profile and credentials ------------------------------------------------------------------


def test_update_profile_changes_the_full_name() -> None:
    user = fresh_user()

    user.update_profile(full_name="Alice A. Smith")

    assert user.full_name is not None
    assert user.full_name.value == "Alice A. Smith"
    assert user.full_name.subject_id == user.id
    assert new_event_types(user) == [User.ProfileUpdated]


def test_update_profile_can_clear_the_full_name() -> None:
    user = fresh_user(full_name="Alice")

    user.update_profile(full_name=None)

    assert user.full_name is None
    assert new_event_types(user) == [User.ProfileUpdated]


@pytest.mark.parametrize("full_name", [None, "Alice Smith"])
def test_update_profile_without_a_change_triggers_no_event(full_name: str | None) -> None:
    user = fresh_user(full_name=full_name)

    user.update_profile(full_name=full_name)

    assert user.collect_events() == []
    assert user.version == 1


def test_change_email_normalises_and_resets_verification() -> None:
    user = fresh_user()
    user.verify()
    assert user.is_verified
    user.collect_events()

    user.change_email(" New.Address@Example.ORG")

    assert user.email_address == "new.address@example.org"
    assert user.is_verified is False
    assert user.verified_at is None
    assert new_event_types(user) == [User.EmailChanged]


@pytest.mark.parametrize("same", ["alice@example.com", "ALICE@Example.com", "  alice@example.com  "])
def test_change_email_to_the_same_address_triggers_no_event(same: str) -> None:
    user = fresh_user()
    user.verify()
    user.collect_events()

    user.change_email(same)

    assert user.collect_events() == []
    assert user.is_verified is True


def test_a_token_sent_to_the_previous_address_does_not_verify_the_new_one(now: datetime) -> None:
    user = fresh_user()
    user.request_verification("digest-for-old-address", now + timedelta(days=2))
    user.change_email("someone-else@example.org")

    with pytest.raises(VerificationTokenError):
        user.verify(token_digest="digest-for-old-address", now=now)


def test_change_password_always_records_the_new_hash() -> None:
    user = fresh_user()

    user.change_password("hash-2")
    user.change_password("hash-2")

    assert user.password_hash == "hash-2"
    assert new_event_types(user) == [User.PasswordChanged, User.PasswordChanged]


def test_rehash_password_records_a_rehash_event() -> None:
    user = fresh_user()

    user.rehash_password("stronger-hash")

    assert user.password_hash == "stronger-hash"
    assert new_event_types(user) == [User.PasswordRehashed]


# ---- verification -----------------------------------------------------------------------------


def test_an_admin_verifies_without_a_token() -> None:
    user = fresh_user()

    user.verify()

    assert user.is_verified is True
    events = user.collect_events()
    assert [type(event) for event in events] == [User.Verified]
    assert user.verified_at == events[0].timestamp


def test_request_verification_stores_the_digest_and_expiry(now: datetime) -> None:
    user = fresh_user()
    expires_at = now + timedelta(days=2)

    user.request_verification("digest-1", expires_at)

    assert user.verification_digest == "digest-1"
    assert user.verification_expires_at == expires_at
    assert new_event_types(user) == [User.VerificationRequested]


def test_the_right_token_before_expiry_verifies_and_clears_the_token(now: datetime) -> None:
    user = fresh_user()
    user.request_verification("digest-1", now + timedelta(hours=1))

    user.verify(token_digest="digest-1", now=now + timedelta(minutes=59))

    assert user.is_verified is True
    assert user.verification_digest is None
    assert user.verification_expires_at is None


def test_a_newer_request_replaces_the_previous_token(now: datetime) -> None:
    user = fresh_user()
    user.request_verification("digest-1", now + timedelta(hours=1))
    user.request_verification("digest-2", now + timedelta(hours=1))

    with pytest.raises(VerificationTokenError):
        user.verify(token_digest="digest-1", now=now)
    user.verify(token_digest="digest-2", now=now)
    assert user.is_verified


def test_a_wrong_token_is_refused(now: datetime) -> None:
    user = fresh_user()
    user.request_verification("digest-1", now + timedelta(hours=1))
    user.collect_events()

    with pytest.raises(VerificationTokenError):
        user.verify(token_digest="digest-2", now=now)

    assert user.is_verified is False
    assert user.collect_events() == []


@pytest.mark.parametrize("after", [timedelta(hours=1), timedelta(hours=1, seconds=1), timedelta(days=30)])
def test_an_expired_token_is_refused(now: datetime, after: timedelta) -> None:
    user = fresh_user()
    user.request_verification("digest-1", now + timedelta(hours=1))

    with pytest.raises(VerificationTokenError):
        user.verify(token_digest="digest-1", now=now + after)

    assert user.is_verified is False


def test_a_token_without_now_is_refused(now: datetime) -> None:
    user = fresh_user()
    user.request_verification("digest-1", now + timedelta(hours=1))

    with pytest.raises(VerificationTokenError):
        user.verify(token_digest="digest-1")


@pytest.mark.parametrize("token_digest", ["", "digest-1"])
def test_a_token_is_refused_when_none_was_requested(now: datetime, token_digest: str) -> None:
    user = fresh_user()

    with pytest.raises(VerificationTokenError):
        user.verify(token_digest=token_digest, now=now)


def test_verifying_a_verified_user_is_a_conflict(now: datetime) -> None:
    user = fresh_user()
    user.verify()
    user.collect_events()

    with pytest.raises(StateConflictError):
        user.verify()
    with pytest.raises(StateConflictError):
        user.verify(token_digest="digest-1", now=now)
    assert user.collect_events() == []


def test_requesting_verification_for_a_verified_user_is_a_conflict(now: datetime) -> None:
    user = fresh_user()
    user.verify()

    with pytest.raises(StateConflictError):
        user.request_verification("digest-1", now + timedelta(hours=1))


# ---- activation and roles ---------------------------------------------------------------------


def test_deactivate_then_activate() -> None:
    user = fresh_user()

    user.deactivate()
    assert user.is_active is False
    user.activate()
    assert user.is_active is True
    assert new_event_types(user) == [User.Deactivated, User.Activated]


def test_deactivation_ends_sessions_and_activation_does_not_revive_them() -> None:
    user = fresh_user()
    started = user.version
    user.deactivate()
    user.activate()
    ended = user.credentials_changed_at
    assert ended is not None
    assert user.accepts_session(started_at_version=started, started_on=ended) is False
    assert user.accepts_session(started_at_version=user.version, started_on=ended) is True


def test_activating_an_active_user_is_a_conflict() -> None:
    user = fresh_user()

    with pytest.raises(StateConflictError) as raised:
        user.activate()

    assert raised.value.resource_id == user.id
    assert type(raised.value) is StateConflictError
    assert user.collect_events() == []


def test_deactivating_an_inactive_user_is_a_conflict() -> None:
    user = fresh_user()
    user.deactivate()
    user.collect_events()

    with pytest.raises(StateConflictError):
        user.deactivate()

    assert user.is_active is False
    assert user.collect_events() == []


def test_grant_then_revoke_superuser() -> None:
    user = fresh_user()

    user.grant_superuser()
    assert user.is_superuser is True
    user.revoke_superuser()
    assert user.is_superuser is False
    assert new_event_types(user) == [User.SuperuserGranted, User.SuperuserRevoked]


def test_granting_superuser_twice_is_a_conflict() -> None:
    user = fresh_user(is_superuser=True)

    with pytest.raises(StateConflictError):
        user.grant_superuser()


def test_revoking_superuser_from_a_regular_user_is_a_conflict() -> None:
    user = fresh_user()

    with pytest.raises(StateConflictError):
        user.revoke_superuser()


# ---- delete, restore, erase -------------------------------------------------------------------


def test_delete_marks_the_user_deleted() -> None:
    user = fresh_user()

    user.delete()

    assert user.is_deleted is True
    events = user.collect_events()
    assert [type(event) for event in events] == [User.Deleted]
    assert user.deleted_at == events[0].timestamp


def test_deleting_twice_is_refused() -> None:
    user = fresh_user()
    user.delete()
    user.collect_events()

    with pytest.raises(UserDeletedError) as raised:
        user.delete()

    assert raised.value.resource_id == user.id
    assert user.collect_events() == []


CHANGES: dict[str, Callable[[User, datetime], None]] = {
    "update_profile": lambda user, now: user.update_profile(full_name="Someone"),
    "change_email": lambda user, now: user.change_email("other@example.com"),
    "change_password": lambda user, now: user.change_password("hash-2"),
    "rehash_password": lambda user, now: user.rehash_password("hash-2"),
    "request_verification": lambda user, now: user.request_verification("d", now + timedelta(hours=1)),
    "verify": lambda user, now: user.verify(),
    "deactivate": lambda user, now: user.deactivate(),
    "grant_superuser": lambda user, now: user.grant_superuser(),
    "delete": lambda user, now: user.delete(),
    "unlock": lambda user, now: user.unlock(now),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_any_change_on_a_deleted_user_is_refused(
    change: Callable[[User, datetime], None], now: datetime
) -> None:
    user = fresh_user()
    for _ in range(4):  # something for unlock to clear
        user.record_failed_login("bad_password", now, LOCKOUT)
    user.delete()
    user.collect_events()

    with pytest.raises(UserDeletedError):
        change(user, now)

    assert user.collect_events() == []


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_any_change_on_an_erased_user_is_refused(
    change: Callable[[User, datetime], None], now: datetime
) -> None:
    user = fresh_user()
    user.erase()
    user.collect_events()

    with pytest.raises(UserErasedError):
        change(user, now)

    assert user.collect_events() == []


def test_restore_brings_a_deleted_user_back() -> None:
    user = fresh_user()
    user.delete()

    user.restore()

    assert user.is_deleted is False
    assert user.deleted_at is None
    assert new_event_types(user) == [User.Deleted, User.Restored]
    user.update_profile(full_name="Back again")  # live again
    assert new_event_types(user) == [User.ProfileUpdated]


def test_restoring_a_user_that_is_not_deleted_is_a_conflict() -> None:
    user = fresh_user()

    with pytest.raises(StateConflictError) as raised:
        user.restore()

    assert not isinstance(raised.value, UserDeletedError | UserErasedError)
    assert user.collect_events() == []


@pytest.mark.parametrize("deleted_first", [False, True])
def test_restoring_an_erased_user_is_refused(deleted_first: bool) -> None:
    user = fresh_user()
    if deleted_first:
        user.delete()
    user.erase()
    user.collect_events()

    with pytest.raises(UserErasedError):
        user.restore()

    assert user.collect_events() == []


def test_erase_marks_the_user_erased_deleted_and_inactive() -> None:
    user = fresh_user()

    user.erase()

    assert user.is_erased is True
    assert user.is_deleted is True
    assert user.is_active is False
    events = user.collect_events()
    assert [type(event) for event in events] == [User.Erased]
    assert user.erased_at == events[0].timestamp
    assert user.deleted_at == events[0].timestamp


def test_erasing_a_deleted_user_keeps_the_deletion_time() -> None:
    user = fresh_user()
    user.delete()
    deleted_at = user.deleted_at

    user.erase()

    assert user.is_erased is True
    assert user.deleted_at == deleted_at


def test_erasing_twice_is_refused() -> None:
    user = fresh_user()
    user.erase()
    user.collect_events()

    with pytest.raises(UserErasedError):
        user.erase()

    assert user.collect_events() == []


# ---- login, failures and lockout --------------------------------------------------------------


def test_a_live_user_may_log_in(now: datetime) -> None:
    user = fresh_user()

    assert user.login_refusal(now) is None
    user.record_login(now)

    events = user.collect_events()
    assert [type(event) for event in events] == [User.LoggedIn]
    assert user.last_login_at == events[0].timestamp


def test_a_deleted_user_may_not_log_in(now: datetime) -> None:
    user = fresh_user()
    user.delete()
    user.collect_events()

    refusal = user.login_refusal(now)
    assert isinstance(refusal, AuthenticationError)
    assert refusal.reason == "deleted"
    with pytest.raises(AuthenticationError) as raised:
        user.record_login(now)
    assert raised.value.reason == "deleted"
    assert user.collect_events() == []


def test_an_inactive_user_may_not_log_in(now: datetime) -> None:
    user = fresh_user()
    user.deactivate()
    user.collect_events()

    refusal = user.login_refusal(now)
    assert isinstance(refusal, AuthenticationError)
    assert refusal.reason == "inactive"
    with pytest.raises(AuthenticationError):
        user.record_login(now)
    assert user.collect_events() == []


def test_four_bad_passwords_count_but_do_not_lock(now: datetime) -> None:
    user = fresh_user()

    for attempt in range(1, 5):
        user.record_failed_login("bad_password", now + timedelta(seconds=attempt), LOCKOUT)
        assert user.failed_login_count == attempt

    assert user.locked_until is None
    assert user.is_locked(now + timedelta(seconds=5)) is False
    assert new_event_types(user) == [User.LoginFailed] * 4


def test_the_fifth_consecutive_bad_password_locks_the_account(now: datetime) -> None:
    user = fresh_user()
    for _ in range(4):
        user.record_failed_login("bad_password", now, LOCKOUT)
    user.collect_events()

    user.record_failed_login("bad_password", now, LOCKOUT)

    events = user.collect_events()
    assert [type(event) for event in events] == [User.LoginFailed, User.Locked]
    assert events[0].failed_login_count == 5
    assert events[0].reason == "bad_password"
    assert events[1].locked_until == now + timedelta(seconds=900)
    assert user.locked_until == now + timedelta(seconds=900)
    assert user.is_locked(now) is True
    assert user.is_locked(now + timedelta(seconds=899)) is True


def lock(user: User, now: datetime) -> None:
    for _ in range(LOCKOUT.max_failures):
        user.record_failed_login("bad_password", now, LOCKOUT)
    assert user.is_locked(now)
    user.collect_events()


def test_a_correct_login_while_locked_raises_account_locked(now: datetime) -> None:
    user = fresh_user()
    lock(user, now)
    during = now + timedelta(seconds=899)

    refusal = user.login_refusal(during)
    assert isinstance(refusal, AccountLockedError)
    with pytest.raises(AccountLockedError) as raised:
        user.record_login(during)

    assert raised.value.locked_until == now + timedelta(seconds=900)
    assert raised.value.reason == "locked"
    assert user.collect_events() == []


def test_login_works_again_once_the_lock_expires(now: datetime) -> None:
    user = fresh_user()
    lock(user, now)
    after = now + timedelta(seconds=900)

    assert user.is_locked(after) is False
    assert user.login_refusal(after) is None
    user.record_login(after)

    assert new_event_types(user) == [User.LoggedIn]
    assert user.locked_until is None
    assert user.failed_login_count == 0


@pytest.mark.parametrize("reason", ["bad_password", "locked"])
def test_failures_while_locked_do_not_increase_the_counter(now: datetime, reason: str) -> None:
    user = fresh_user()
    lock(user, now)
    locked_until = user.locked_until

    for second in range(1, 11):
        user.record_failed_login(reason, now + timedelta(seconds=second), LOCKOUT)

    events = user.collect_events()
    assert [type(event) for event in events] == [User.LoginFailed] * 10
    assert all(event.failed_login_count == 0 for event in events)
    assert user.failed_login_count == 0
    assert user.locked_until == locked_until  # not extended


def test_failures_after_the_lock_expires_count_from_zero(now: datetime) -> None:
    user = fresh_user()
    lock(user, now)
    later = now + timedelta(seconds=901)

    user.record_failed_login("bad_password", later, LOCKOUT)

    assert user.failed_login_count == 1
    assert user.is_locked(later) is False


def test_a_successful_login_resets_the_failure_counter(now: datetime) -> None:
    user = fresh_user()
    for _ in range(4):
        user.record_failed_login("bad_password", now, LOCKOUT)

    user.record_login(now)
    assert user.failed_login_count == 0
    for _ in range(4):
        user.record_failed_login("bad_password", now, LOCKOUT)

    assert user.failed_login_count == 4
    assert user.is_locked(now) is False


@pytest.mark.parametrize("reason", ["inactive", "deleted", "locked"])
def test_failures_for_other_reasons_do_not_count(now: datetime, reason: str) -> None:
    user = fresh_user()

    for _ in range(LOCKOUT.max_failures + 1):
        user.record_failed_login(reason, now, LOCKOUT)

    assert user.failed_login_count == 0
    assert user.is_locked(now) is False


def test_unlock_clears_a_lock(now: datetime) -> None:
    user = fresh_user()
    lock(user, now)

    user.unlock(now)

    assert new_event_types(user) == [User.Unlocked]
    assert user.is_locked(now) is False
    assert user.locked_until is None
    user.record_login(now)


def test_unlock_clears_a_failure_count_below_the_limit(now: datetime) -> None:
    user = fresh_user()
    user.record_failed_login("bad_password", now, LOCKOUT)

    user.unlock(now)

    assert user.failed_login_count == 0


def test_unlocking_a_user_that_is_not_locked_is_a_conflict(now: datetime) -> None:
    user = fresh_user()

    with pytest.raises(StateConflictError):
        user.unlock(now)

    assert user.collect_events() == []


def test_unlocking_after_the_lock_expired_is_a_conflict(now: datetime) -> None:
    user = fresh_user()
    lock(user, now)

    with pytest.raises(StateConflictError):
        user.unlock(now + timedelta(seconds=900))


# ---- state rebuilt from events ----------------------------------------------------------------


def eventful_user(now: datetime) -> tuple[User, list[Any]]:
    user = register(full_name="Alice", email="Alice@Example.com")
    user.update_profile(full_name="Alice Smith")
    user.request_verification("digest-1", now + timedelta(hours=1))
    user.verify(token_digest="digest-1", now=now)
    user.change_email("alice@example.org")
    user.change_password("hash-2")
    user.grant_superuser()
    for _ in range(5):
        user.record_failed_login("bad_password", now, LOCKOUT)
    user.unlock(now)
    user.record_login(now)
    user.deactivate()
    user.activate()
    user.delete()
    user.restore()
    return user, user.collect_events()


def replay(events: list[Any]) -> User:
    user = events[0].mutate(None)
    for event in events[1:]:
        user = event.mutate(user)
    assert isinstance(user, User)
    return user


def test_state_rebuilt_from_the_events_equals_the_live_aggregate(now: datetime) -> None:
    user, events = eventful_user(now)

    rebuilt = replay(events)

    assert len(events) == 19
    assert rebuilt.version == user.version == len(events)
    assert rebuilt == user
    assert vars(rebuilt) == vars(user)


def test_state_rebuilt_from_the_events_of_an_erased_user(now: datetime) -> None:
    user, events = eventful_user(now)
    user.erase()
    events += user.collect_events()

    rebuilt = replay(events)

    assert rebuilt == user
    assert rebuilt.is_erased and rebuilt.is_deleted and not rebuilt.is_active


def test_replaying_a_prefix_gives_the_state_at_that_version(now: datetime) -> None:
    user, events = eventful_user(now)
    deleted_version = next(i for i, event in enumerate(events, 1) if isinstance(event, User.Deleted))

    at_deletion = replay(events[:deleted_version])

    assert at_deletion.version == deleted_version
    assert at_deletion.is_deleted is True
    assert user.is_deleted is False


def test_the_library_projector_rebuilds_the_same_state(now: datetime) -> None:
    user, events = eventful_user(now)

    rebuilt = project_aggregate(None, events)  # what the repository uses by default

    assert isinstance(rebuilt, User)
    assert rebuilt == user


# ---- sessions against the events that end them --------------------------------------------


@pytest.mark.parametrize("ending", ["change_password", "reset_password", "delete", "erase"])
def test_sessions_are_ordered_against_what_ends_them_by_version_not_by_clock(ending: str) -> None:
    user = fresh_user()
    before = user.version  # a login decided on this version
    getattr(user, ending)(*(["hash-2"] if "password" in ending else []))
    if ending == "delete":
        user.restore()  # a restore brings the user back, not their sessions
    ended = user.credentials_changed_at
    assert ended is not None
    # Same instant (the clock says nothing): the versions decide.
    assert user.accepts_session(started_at_version=before, started_on=ended) is False
    assert user.accepts_session(started_at_version=user.version, started_on=ended) is True


def test_sessions_stored_without_a_version_are_ordered_by_full_precision_times() -> None:
    user = fresh_user()
    assert user.accepts_session(started_at_version=None, started_on=datetime(2000, 1, 1, tzinfo=UTC))
    user.change_password("hash-2")
    changed = user.credentials_changed_at
    assert changed is not None
    same_second = changed.replace(microsecond=0)  # what a one-second clock would have called equal
    assert user.accepts_session(started_at_version=None, started_on=same_second) is (same_second > changed)
    assert user.accepts_session(started_at_version=None, started_on=changed) is False
    assert user.accepts_session(started_at_version=None, started_on=changed + timedelta(microseconds=1))


def test_a_user_state_from_before_versions_falls_back_to_times() -> None:
    user = fresh_user()
    user.change_password("hash-2")
    changed = user.credentials_changed_at
    assert changed is not None
    del user.__dict__["credentials_version"]  # a snapshot taken before the field existed
    assert user.accepts_session(started_at_version=user.version, started_on=changed) is False
    assert user.accepts_session(started_at_version=user.version, started_on=changed + timedelta(seconds=1))
