"""Argon2id password hashing (cheap parameters: these tests check behaviour, not cost)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from eventstore.passwords import Argon2Parameters, HashingSlots, Passwords, hashing_cores

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

    fast = Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1)
    passwords = Passwords(fast, slots=HashingSlots(2))
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


def _hold_a_slot(directory: str, log: str) -> None:
    import time

    slots = HashingSlots(1, Path(directory))
    for _ in range(3):
        with slots.held():
            started = time.monotonic()
            time.sleep(0.05)
            with open(log, "a") as file:
                file.write(f"{started} {time.monotonic()}\n")


def test_the_processes_of_one_host_share_its_hashing_slots(tmp_path: Path) -> None:
    """Two API processes with one slot between them: their hashes never overlap (a login
    flood leaves the other cores to the other requests)."""
    import multiprocessing

    log = tmp_path / "held.log"
    context = multiprocessing.get_context("spawn")
    arguments = (str(tmp_path / "slots"), str(log))
    processes = [context.Process(target=_hold_a_slot, args=arguments) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    intervals = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(intervals) == 6
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(intervals))


def test_hashing_leaves_one_core_to_everything_else() -> None:
    assert hashing_cores(2) == 1 and hashing_cores(8) == 7 and hashing_cores(1) == 1
