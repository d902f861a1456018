"""Password logins: outcomes recorded as events, no timing oracle, rehash on parameter change."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import AuthenticationError
from domain.sessions import Session
from domain.users import User
from eventstore.passwords import Argon2Parameters, Passwords
from ledgerline.bootstrap import Components, build
from tests.conftest import settings_for
from tests.integration.helpers import STRONG_PASSWORD, events_of, register


class CountingPasswords(Passwords):
    def __init__(self, parameters: Argon2Parameters) -> None:
        super().__init__(parameters)
        self.verifications = 0

    def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(password_hash, password)


def test_login_by_username_or_email_records_the_login(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    assert identity.authenticate("ALICE", STRONG_PASSWORD).id == alice.id
    assert identity.authenticate("alice@example.com", STRONG_PASSWORD).id == alice.id
    assert isinstance(events_of(identity, alice.id)[-1], User.LoggedIn)
    assert identity.get_user(alice.id).last_login_at is not None


@pytest.mark.parametrize("disable", ["deactivate_user", "delete_user"])
def test_inactive_or_deleted_users_cannot_log_in(components: Components, disable: str) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    getattr(identity, disable)(alice.id)
    head = identity.head_position()
    for _ in range(3):
        with pytest.raises(AuthenticationError) as error:
            identity.authenticate("alice", STRONG_PASSWORD)
        assert str(error.value) == "invalid credentials"  # one message for every cause
    assert identity.head_position() == head  # refusals cannot be used to grow her stream


def test_unknown_user_costs_one_hash_like_a_known_one(database_url: str, tmp_path: Path) -> None:
    passwords = CountingPasswords(Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1))
    built = build(settings_for(database_url, tmp_path), init=True, passwords=passwords)
    try:
        register(built.identity, "alice")
        with pytest.raises(AuthenticationError) as unknown:
            built.identity.authenticate("nobody", STRONG_PASSWORD)
        assert passwords.verifications == 1
        with pytest.raises(AuthenticationError) as wrong:
            built.identity.authenticate("alice", "Wrong-password-1")
        assert passwords.verifications == 2
        assert str(unknown.value) == str(wrong.value)
    finally:
        built.close()


def test_login_rehashes_when_parameters_change(database_url: str, tmp_path: Path) -> None:
    weak = Passwords(Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1))
    stronger = Passwords(Argon2Parameters(memory_kib=2048, time_cost=2, parallelism=1))
    first = build(settings_for(database_url, tmp_path), init=True, passwords=weak)
    try:
        alice = register(first.identity, "alice")
    finally:
        first.close()
    second = build(settings_for(database_url, tmp_path), passwords=stronger)
    try:
        second.identity.authenticate("alice", STRONG_PASSWORD)
        user = second.identity.get_user(alice.id)
        assert "m=2048,t=2" in user.password_hash
        assert isinstance(events_of(second.identity, alice.id)[-1], User.PasswordRehashed)
        second.identity.authenticate("alice", STRONG_PASSWORD)  # the new hash verifies
        assert not isinstance(events_of(second.identity, alice.id)[-1], User.PasswordRehashed)
    finally:
        second.close()


def test_changed_password_replaces_the_old_one(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    with pytest.raises(Exception, match="current password is wrong"):
        identity.change_password(alice.id, current_password="nope", new_password="New-Password-2")
    identity.change_password(alice.id, current_password=STRONG_PASSWORD, new_password="New-Password-2")
    with pytest.raises(AuthenticationError):
        identity.authenticate("alice", STRONG_PASSWORD)
    assert identity.authenticate("alice", "New-Password-2").id == alice.id


def test_a_login_and_its_session_are_one_append_that_records_the_users_version(
    components: Components,
) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    head = identity.head_position()
    tokens = identity.log_in("alice", STRONG_PASSWORD)
    written = identity.recorder.select_notifications(head, 10, inclusive_of_start=False)
    assert [n.topic for n in written] == [User.LoggedIn.TOPIC, Session.Started.TOPIC]
    session = identity.repository.get(tokens.session_id)
    assert isinstance(session, Session) and session.user_version == identity.get_user(alice.id).version
    assert identity.user_of_live_session(tokens.session_id).id == alice.id
    identity.change_password(alice.id, current_password=STRONG_PASSWORD, new_password="Another-Pass-7")
    with pytest.raises(AuthenticationError):
        identity.user_of_live_session(tokens.session_id)
    with pytest.raises(AuthenticationError):
        identity.refresh_session(tokens.refresh_token)
    assert identity.head_position() == written[-1].id + 1  # the refused refresh wrote nothing
