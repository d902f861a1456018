"""Attacker's pass on the hot path (decision 0013), two API processes made deterministic.

Each "process" is a store of its own (its own aggregate cache, data-key cache and connection
pool) on one PostgreSQL database, followed by its own ``StreamFollower`` (so its cache is
trusted, as in ``ledgerline serve``), whose thread is not started: ``reach_head`` is what every
request does first (``api.context.CurrentState``), so a step taken *without* it is a request whose
head read came before the other process's write (requests queue for threads; any delay fits).

The decision under attack: "commands decide on the cached aggregate and let the append check
it" and "erasure drops the entries it saved and the follower drops the others".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from api.follower import StreamFollower
from api.security import CredentialCache
from domain.errors import (
    ApiKeyNameTakenError,
    EmailTakenError,
    UserDeletedError,
    UsernameTakenError,
    VersionMismatchError,
)
from domain.values import ERASED
from eventstore.identity import Identity
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from tests.conftest import settings_for
from tests.integration.helpers import register

SCOPES = {"users:read": True, "api_keys:read": True, "api_keys:write": True}


@dataclass
class Process:
    components: Components
    follower: StreamFollower

    @property
    def identity(self) -> Identity:
        return self.components.identity

    def reach_head(self) -> None:
        """What ``api.context`` does before every request: the follower reads up to the head."""
        self.follower.catch_up(self.identity.head_position())


@pytest.fixture
def processes(
    pg_database: str, tmp_path: Path, fast_passwords: Passwords
) -> Iterator[tuple[Process, Process]]:
    built: list[Components] = []
    try:
        for n in range(2):
            components = build(
                settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE="3"),
                init=n == 0,
                passwords=fast_passwords,
            )
            built.append(components)
        first, second = (
            Process(c, StreamFollower(c.identity, CredentialCache(), threading.Event())) for c in built
        )
        yield first, second
    finally:
        for components in built:
            components.close()


def both_at_head(*processes: Process) -> None:
    for process in processes:
        process.reach_head()


# ---- (2) a command never commits a decision made on stale state --------------------------------


def test_one_if_match_over_two_processes_one_wins_the_other_is_412(
    processes: tuple[Process, Process],
) -> None:
    a, b = processes
    alice = register(a.identity, "alice")
    both_at_head(a, b)
    version = b.identity.get_user(alice.id).version  # both hold her, current, in memory
    assert a.identity.get_user(alice.id).version == version

    a.identity.update_user(alice.id, full_name="Written By A", expected_version=version)
    # B's request read the head before A's answer: its copy is stale, the append must catch it.
    with pytest.raises(VersionMismatchError):
        b.identity.update_user(alice.id, full_name="Written By B", expected_version=version)
    b.reach_head()
    stored = b.identity.get_user(alice.id)
    assert stored.full_name is not None and stored.full_name.value == "Written By A"
    assert stored.version == version + 1


def test_without_if_match_a_stale_process_decides_again_on_fresh_state(
    processes: tuple[Process, Process],
) -> None:
    a, b = processes
    alice = register(a.identity, "alice")
    both_at_head(a, b)
    b.identity.get_user(alice.id)  # cached in B
    a.identity.update_user(alice.id, full_name="Written By A")
    answered = b.identity.update_user(alice.id, email="alice.new@example.com")  # B is stale
    # The answer is built on the state the append checked: A's change is in it, not lost.
    assert answered.aggregate.full_name.value == "Written By A"  # type: ignore[union-attr]
    assert answered.aggregate.email_address == "alice.new@example.com"
    b.reach_head()
    stored = b.identity.get_user(alice.id)
    assert (stored.full_name.value, stored.email_address) == ("Written By A", "alice.new@example.com")  # type: ignore[union-attr]


def test_a_username_taken_in_another_process_is_taken_here(processes: tuple[Process, Process]) -> None:
    a, b = processes
    both_at_head(a, b)
    register(a.identity, "carol")
    with pytest.raises(UsernameTakenError):
        register(b.identity, "Carol", email="other-carol@example.com")  # B has not read A's write


def test_an_address_a_stale_process_holds_as_released_is_not_taken_twice(
    processes: tuple[Process, Process],
) -> None:
    """B holds the address's reservation as released (an erasure freed it); A claims it; B,
    deciding on its stale copy, must still answer 'taken'."""
    a, b = processes
    dave = register(a.identity, "dave", email="shared@example.com")
    a.identity.erase_user(dave.id)  # frees the address
    both_at_head(a, b)
    b.identity.find_user_id("shared@example.com")  # B holds the released reservation in memory
    register(a.identity, "frank", email="shared@example.com")
    with pytest.raises(EmailTakenError):
        register(b.identity, "grace", email="Shared@Example.com")
    b.reach_head()
    assert b.identity.find_user_id("shared@example.com") == a.identity.find_user_id("frank")


def test_a_key_name_taken_in_another_process_is_taken_here(processes: tuple[Process, Process]) -> None:
    a, b = processes
    owner = register(a.identity, "alice")
    b.reach_head()
    b.identity.issue_api_key(owner.id, name="laptop", permissions=SCOPES)  # B holds her ring
    a.reach_head()
    a.identity.issue_api_key(owner.id, name="ci", permissions=SCOPES)
    with pytest.raises(ApiKeyNameTakenError):
        b.identity.issue_api_key(owner.id, name="CI", permissions=SCOPES)  # on B's stale ring
    other = b.identity.issue_api_key(owner.id, name="phone", permissions=SCOPES)
    with pytest.raises(ApiKeyNameTakenError):  # a rename is checked on the ring too
        b.identity.update_api_key(other.result.id, name="ci")


def test_a_key_for_an_owner_deleted_in_another_process_just_before_is_refused(
    processes: tuple[Process, Process],
) -> None:
    a, b = processes
    owner = register(a.identity, "alice")
    both_at_head(a, b)
    b.identity.get_user(owner.id)  # B holds her, live
    a.identity.delete_user(owner.id)
    b.reach_head()  # the next request to B
    with pytest.raises(UserDeletedError):
        b.identity.issue_api_key(owner.id, name="after", permissions=SCOPES)


def test_a_key_issued_on_a_cached_owner_while_another_process_deletes_her_is_not_committed(
    processes: tuple[Process, Process],
) -> None:
    """DEFECT. ``issue_api_key`` decides on the owner (``check_live``) but does not save her, so
    the append's version check does not guard that decision; the key ring guards it only while
    she has a live key (the deletion then revokes it and moves the ring on). Before the hot path
    the owner was read from the store in the attempt; now the copy is as of the request's head
    read. A deletion answered after that read and before the append leaves a live, unrevoked key
    to a deleted owner, which a restore brings back to life (``DELETE /users/{id}``: keys
    revoked; a restore brings back neither sessions nor keys)."""
    a, b = processes
    owner = register(a.identity, "alice")
    first = a.identity.issue_api_key(owner.id, name="old", permissions=SCOPES)
    a.identity.revoke_api_key(first.result.id)  # her ring is empty, and no longer moves on delete
    both_at_head(a, b)
    b.identity.get_user(owner.id)  # B's request authenticated her and holds her, live
    deleted = a.identity.delete_user(owner.id)  # answered by A ...
    issued = None
    with contextlib.suppress(UserDeletedError):  # ... then B's request (head read before it)
        issued = b.identity.issue_api_key(owner.id, name="late", permissions=SCOPES)
    b.reach_head()
    late = None if issued is None else b.identity.get_api_key(issued.result.id)
    assert late is None or late.is_revoked, (
        f"a key was issued at position {issued.result.position if issued else '?'} for an owner "
        f"deleted at position {deleted.position}, and is not revoked"
    )


def _from_both(a: Process, b: Process, work: Any, count: int) -> list[Any]:
    """``work(process, n)`` from ``count`` threads, alternating between the processes, at once."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = work((a, b)[n % 2], n)
        except Exception as error:
            results[n] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_changes_from_both_processes_on_stale_copies_lose_no_update(
    processes: tuple[Process, Process],
) -> None:
    """Twelve commands at once, half through each process, each deciding first on its cached
    (soon stale) ring or user: one append per group in each process, the version check between
    them. Every key lands in the ring and every profile change in the stream."""
    a, b = processes
    owner = register(a.identity, "alice")
    both_at_head(a, b)
    for process in (a, b):  # both hold the ring and the user
        process.identity.api_key_ids_of(owner.id)
        process.identity.get_user(owner.id)
    version = a.identity.get_user(owner.id).version

    keys = _from_both(
        a, b, lambda p, n: p.identity.issue_api_key(owner.id, name=f"key-{n}", permissions=SCOPES), 12
    )
    assert [type(k).__name__ for k in keys] == ["IssuedKey"] * 12, keys
    changes = _from_both(a, b, lambda p, n: p.identity.update_user(owner.id, full_name=f"Name {n}"), 12)
    assert not [c for c in changes if isinstance(c, Exception)], changes

    both_at_head(a, b)
    for process in (a, b):
        ring = set(process.identity.api_key_ids_of(owner.id))
        assert ring == {k.result.id for k in keys}
        assert process.identity.get_user(owner.id).version == version + 12
    assert sorted(c.aggregate.version for c in changes) == list(range(version + 1, version + 13))


# ---- (3) no plaintext personal data served after an erasure -------------------------------------
#
# Loaded aggregates hold ``StoredPersonalData``, decrypted at each read (so a cached copy reads
# "[erased]" once the key is forgotten); aggregates *saved* by a process are cached as saved
# (commit 10c9c68), holding the request's ``PersonalData`` in plain.


def test_an_owner_read_between_the_erasure_and_the_key_destruction_reads_erased_after(
    processes: tuple[Process, Process],
) -> None:
    """Held: B reads the user after A appended ``User.Erased`` and before A destroyed her data
    key (B's request read the head before the append; the key is still in the store), and caches
    the erased version; its follower then reads the erasure and forgets the key: the cached copy
    holds only ciphertext and reads "[erased]"."""
    a, b = processes
    alice = register(a.identity, "alice", full_name="Alice Private")
    both_at_head(a, b)
    destroy = a.identity.data_keys.erase

    def read_in_b_then_destroy(subject_id: UUID) -> None:
        b.identity.get_user(alice.id)  # B's request: a cache miss, read from the store
        destroy(subject_id)

    a.identity.data_keys.erase = read_in_b_then_destroy  # type: ignore[method-assign]
    try:
        a.identity.erase_user(alice.id)
    finally:
        a.identity.data_keys.erase = destroy  # type: ignore[method-assign]
    b.reach_head()  # every later request to B
    served = b.identity.get_user(alice.id)
    assert served.is_erased
    assert (served.email_address, served.full_name.value) == (ERASED, ERASED)  # type: ignore[union-attr]


def test_the_erasing_process_read_meanwhile_keeps_nothing_in_plain(
    processes: tuple[Process, Process],
) -> None:
    """Held: the same window inside the erasing process (a concurrent read between the append,
    whose saved copy is forgotten, and the key's destruction): neither the erasure's answer nor a
    later read shows her data."""
    a, _ = processes
    alice = register(a.identity, "alice", full_name="Alice Private")
    a.identity.update_user(alice.id, full_name="Alice Saved Here")  # cached as saved: in plain
    a.reach_head()
    destroy = a.identity.data_keys.erase

    def concurrent_read_then_destroy(subject_id: UUID) -> None:
        reader = threading.Thread(target=a.identity.get_user, args=(alice.id,))  # another request
        reader.start()
        reader.join()
        destroy(subject_id)

    a.identity.data_keys.erase = concurrent_read_then_destroy  # type: ignore[method-assign]
    try:
        answer = a.identity.erase_user(alice.id).aggregate
    finally:
        a.identity.data_keys.erase = destroy  # type: ignore[method-assign]
    a.reach_head()
    later = a.identity.get_user(alice.id)
    leaks = {
        "answer": (answer.email_address, answer.full_name.value),  # type: ignore[union-attr]
        "later read": (later.email_address, later.full_name.value),  # type: ignore[union-attr]
    }
    assert leaks == {"answer": (ERASED, ERASED), "later read": (ERASED, ERASED)}, leaks


def _used_then_revoked(process: Process, owner_id: UUID, name: str, ip: str) -> UUID:
    """A key whose last use (flushed by ``process``) and revocation were saved by ``process``."""
    key = process.identity.issue_api_key(owner_id, name=name, permissions=SCOPES)
    process.identity.record_api_key_usage(
        key.result.id, count=3, last_used_at=datetime.now(UTC), last_used_ip=ip
    )
    process.identity.revoke_api_key(key.result.id)
    return key.result.id


def test_a_key_revoked_before_the_erasure_shows_no_address_in_any_process(
    processes: tuple[Process, Process],
) -> None:
    """DEFECT. ``ApiKey.last_used_ip`` is the owner's personal data. A key whose usage flush or
    revocation a process saved is cached there as saved (plain ``PersonalData``). A key revoked
    before the erasure (by its owner, or by ``DELETE /users/{id}``) is not saved by it, so
    neither the erasing process (``erase_user``'s ``touched``) nor a follower (no event of the key)
    drops it: ``GET /api-keys/{id}`` (``get_api_key``) serves the address in plain after the
    erasure, from the erasing process and from the other one, while the store reads it erased."""
    a, b = processes
    owner = register(a.identity, "alice")
    b.reach_head()
    in_a = _used_then_revoked(a, owner.id, "laptop", "203.0.113.77")
    b.reach_head()
    in_b = _used_then_revoked(b, owner.id, "phone", "203.0.113.88")
    a.reach_head()
    a.identity.erase_user(owner.id)
    both_at_head(a, b)
    for process, key_id in ((a, in_a), (b, in_b)):
        stored = process.identity.repository.get(key_id)  # the store's word, past every cache
        assert stored.last_used_ip.value == ERASED  # type: ignore[attr-defined]
    shown = {"A": a.identity.get_api_key(in_a).last_used_ip, "B": b.identity.get_api_key(in_b).last_used_ip}
    plain = {name: ip.value for name, ip in shown.items() if ip is not None and ip.value != ERASED}
    assert plain == {}, f"the erased owner's addresses are still served: {plain}"


def test_a_usage_flush_landing_after_the_erasure_caches_no_address_in_plain(
    processes: tuple[Process, Process],
) -> None:
    """DEFECT. The usage flusher writes what it counted before the erasure after it (every few
    seconds): the event is stored erased (the key is gone), but the process caches the key as
    saved, with the address in plain, and serves it (``GET /api-keys/{id}``)."""
    a, _ = processes
    owner = register(a.identity, "alice")
    key = a.identity.issue_api_key(owner.id, name="laptop", permissions=SCOPES)
    a.reach_head()
    a.identity.erase_user(owner.id)  # revokes the key
    a.identity.record_api_key_usage(  # the flush of a use counted just before
        key.result.id, count=1, last_used_at=datetime.now(UTC), last_used_ip="203.0.113.99"
    )
    a.reach_head()
    assert a.identity.repository.get(key.result.id).last_used_ip.value == ERASED  # type: ignore[attr-defined]
    ip: Any = a.identity.get_api_key(key.result.id).last_used_ip
    assert ip is None or ip.value == ERASED, f"served in plain: {ip.value}"


def test_an_erasure_in_another_process_shows_at_the_next_request(processes: tuple[Process, Process]) -> None:
    """Held: B had the user (saved there, in plain) and her live key cached before the erasure."""
    a, b = processes
    alice = register(a.identity, "alice", full_name="Alice Private")
    key = a.identity.issue_api_key(alice.id, name="laptop", permissions=SCOPES)
    both_at_head(a, b)
    b.identity.update_user(alice.id, full_name="Alice Saved In B")
    b.identity.record_api_key_usage(
        key.result.id, count=1, last_used_at=datetime.now(UTC), last_used_ip="203.0.113.78"
    )
    a.reach_head()
    a.identity.erase_user(alice.id)
    b.reach_head()
    user = b.identity.get_user(alice.id)
    assert (user.email_address, user.full_name.value) == (ERASED, ERASED)  # type: ignore[union-attr]
    ip: Any = b.identity.get_api_key(key.result.id).last_used_ip
    assert ip is not None and ip.value == ERASED
