"""Argon2id password hashing (cheap parameters: these tests check behaviour, not cost)."""

from __future__ import annotations

import pytest

from eventstore.passwords import Argon2Parameters, Passwords

FAST = Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(FAST)


@pytest.fixture(scope="module")
def password_hash(passwords: Passwords) -> str:
    return passwords.hash("Correct-Horse-9")


def test_the_hash_is_argon2id_with_the_given_parameters(password_hash: str) -> None:
    assert password_hash.startswith("$argon2id$")
    assert "m=1024,t=1,p=1" in password_hash
    assert "Correct-Horse-9" not in password_hash


def test_hashing_twice_gives_different_salted_hashes(passwords: Passwords, password_hash: str) -> None:
    again = passwords.hash("Correct-Horse-9")

    assert again != password_hash
    assert passwords.verify(again, "Correct-Horse-9") is True


def test_verify_the_right_password(passwords: Passwords, password_hash: str) -> None:
    assert passwords.verify(password_hash, "Correct-Horse-9") is True


@pytest.mark.parametrize("wrong", ["correct-horse-9", "Correct-Horse-9 ", "Correct-Horse-", ""])
def test_verify_a_wrong_password(passwords: Passwords, password_hash: str, wrong: str) -> None:
    assert passwords.verify(password_hash, wrong) is False


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=1024,t=1,p=1$bm90LWEtc2FsdA",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5ePmMsJ7Bt3nL7o2oG9vS3rLZrX8i2a",
    ],
)
def test_verify_against_a_garbage_hash_returns_false(passwords: Passwords, garbage: str) -> None:
    assert passwords.verify(garbage, "Correct-Horse-9") is False


def test_verify_against_a_truncated_hash_returns_false(passwords: Passwords, password_hash: str) -> None:
    assert passwords.verify(password_hash[:-4], "Correct-Horse-9") is False


def test_verify_nothing_returns_without_raising(passwords: Passwords) -> None:
    assert passwords.verify_nothing("anything") is None


def test_no_rehash_needed_for_the_same_parameters(passwords: Passwords, password_hash: str) -> None:
    assert passwords.needs_rehash(password_hash) is False
    assert Passwords(FAST).needs_rehash(password_hash) is False


@pytest.mark.parametrize(
    "other",
    [
        Argon2Parameters(memory_kib=2048, time_cost=1, parallelism=1),
        Argon2Parameters(memory_kib=1024, time_cost=2, parallelism=1),
        Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=2),
    ],
)
def test_a_hasher_with_other_parameters_wants_a_rehash(password_hash: str, other: Argon2Parameters) -> None:
    stronger = Passwords(other)

    assert stronger.needs_rehash(password_hash) is True
    assert stronger.verify(password_hash, "Correct-Horse-9") is True  # still verifies, then rehashes


def test_default_parameters_are_owasps_minimum() -> None:
    assert Argon2Parameters() == Argon2Parameters(memory_kib=19456, time_cost=2, parallelism=1)


def test_no_more_hashes_run_at_once_than_there_are_slots() -> None:
    import threading
    import time

    passwords = Passwords(Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1), slots=2)
    running, most, lock = 0, 0, threading.Lock()
    stored = passwords.hash("Correct-Horse-9")
    real = passwords._hasher

    class Counting:
        def verify(self, password_hash: str, password: str) -> bool:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            with lock:
                running -= 1
            return real.verify(password_hash, password)

    passwords._hasher = Counting()  # type: ignore[assignment]
    threads = [threading.Thread(target=passwords.verify, args=(stored, "Correct-Horse-9")) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 2
