"""Interleavings made deterministic: another writer acts between a command's read and its append."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from domain.errors import ApiKeyNameTakenError, AuthenticationError, EmailTakenError, WrongPasswordError
from domain.users import User
from eventstore.passwords import Argon2Parameters, Passwords
from ledgerline.bootstrap import Components, build
from tests.conftest import settings_for
from tests.integration.helpers import STRONG_PASSWORD, events_of, register


class InterruptingPasswords(Passwords):
    """Runs ``interruption`` once, right after the first verification: another request's write
    lands between this command's check and its append."""

    def __init__(self) -> None:
        super().__init__(Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1))
        self.interruption: Any = None

    def verify(self, password_hash: str, password: str) -> bool:
        verdict = super().verify(password_hash, password)
        interruption, self.interruption = self.interruption, None
        if interruption is not None:
            interruption()
        return verdict


def test_an_admin_reset_between_check_and_change_makes_the_old_password_fail(
    database_url: str, tmp_path: Path
) -> None:
    passwords = InterruptingPasswords()
    built = build(settings_for(database_url, tmp_path), init=True, passwords=passwords)
    try:
        identity = built.identity
        alice = register(identity, "alice")
        passwords.interruption = lambda: identity.reset_password(alice.id, "Admin-Chosen-1")
        with pytest.raises(WrongPasswordError):
            identity.change_password(alice.id, current_password=STRONG_PASSWORD, new_password="Attacker-Pw-1")
        assert identity.authenticate("alice", "Admin-Chosen-1").id == alice.id  # the reset stands
        assert isinstance(events_of(identity, alice.id)[-2], User.PasswordReset)
    finally:
        built.close()


def test_an_email_taken_between_read_and_append_is_a_uniqueness_error_even_with_if_match(
    components: Components,
) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    claim = identity._claim
    rivals = []

    def claim_then_rival_commits(*args: Any) -> Any:
        reservation = claim(*args)  # read while the address is still free...
        if args[0] == "email" and not rivals:
            rivals.append("mallory")  # before the call: her registration claims an e-mail too
            register(identity, "mallory", email="wanted@example.com")  # ...then it is taken
        return reservation

    identity._claim = claim_then_rival_commits  # type: ignore[method-assign]
    with pytest.raises(EmailTakenError):
        identity.update_user(alice.id, email="wanted@example.com", expected_version=1)
    assert rivals and identity.get_user(alice.id).version == 1


def test_a_key_rename_with_if_match_survives_another_key_being_issued(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    first = identity.issue_api_key(alice.id, name="one", permissions={"users:read": True})
    ring = identity._key_ring
    issued = []

    def ring_then_rival(owner_id: Any) -> Any:
        loaded = ring(owner_id)
        if not issued:  # another key of hers is issued after we read the ring
            issued.append("two")  # before the call: issuing reads the ring too
            identity.issue_api_key(alice.id, name="two", permissions={"users:read": True})
        return loaded

    identity._key_ring = ring_then_rival  # type: ignore[method-assign]
    identity.update_api_key(first.result.id, name="renamed", expected_version=1)
    identity._key_ring = ring  # type: ignore[method-assign]
    assert identity.get_api_key(first.result.id).name == "renamed"
    with pytest.raises(ApiKeyNameTakenError):
        identity.issue_api_key(alice.id, name="RENAMED", permissions={"users:read": True})


def test_every_login_failure_takes_at_least_the_floor(database_url: str, tmp_path: Path) -> None:
    fast = Passwords(Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1))
    settings = settings_for(database_url, tmp_path, LEDGERLINE_LOGIN_FAILURE_FLOOR_MS="300")
    built = build(settings, init=True, passwords=fast)
    try:
        identity = built.identity
        register(identity, "alice")
        register(identity, "bob")
        identity.deactivate_user(identity.find_user_id("bob"))  # type: ignore[arg-type]
        for login, password in (("nobody", "x"), ("alice", "wrong"), ("bob", STRONG_PASSWORD)):
            started = time.monotonic()
            with pytest.raises(AuthenticationError):
                identity.authenticate(login, password)
            assert time.monotonic() - started >= 0.3, login
        slept: list[float] = []
        real_sleep = time.sleep
        time.sleep = lambda seconds: slept.append(seconds) or real_sleep(seconds)  # type: ignore[assignment]
        try:
            identity.authenticate("alice", STRONG_PASSWORD)
        finally:
            time.sleep = real_sleep  # type: ignore[assignment]
        assert not any(seconds > 0 for seconds in slept)  # success is not padded
    finally:
        built.close()
