"""Concurrent writers: uniqueness races and the login lockout under parallel attempts."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from domain.errors import AccountLockedError, AuthenticationError, EmailTakenError, UsernameTakenError
from domain.users import User
from ledgerline.bootstrap import Components
from tests.integration.helpers import STRONG_PASSWORD, events_of, register

WRITERS = 20


def race(action: Callable[[int], Any], count: int = WRITERS) -> list[Any]:
    """Run ``action(i)`` in ``count`` threads released together; return results or exceptions."""
    barrier = threading.Barrier(count)
    outcomes: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = action(i)
        except Exception as error:  # collected and asserted on below
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return outcomes


def kinds(outcomes: list[Any]) -> Counter[str]:
    return Counter("ok" if not isinstance(o, Exception) else type(o).__name__ for o in outcomes)


def spell(name: str, i: int) -> str:
    """``name`` with the letters' case chosen by the bits of ``i``: 20 spellings of one name."""
    return "".join(c.upper() if (i >> n) & 1 else c for n, c in enumerate(name))


def test_concurrent_registrations_of_one_username_one_wins(components: Components) -> None:
    identity = components.identity
    outcomes = race(lambda i: register(identity, spell("mallory", i), email=f"m{i}@example.com"))
    assert kinds(outcomes) == Counter({"ok": 1, "UsernameTakenError": WRITERS - 1})
    assert all(isinstance(o, UsernameTakenError) for o in outcomes if isinstance(o, Exception))
    winner = next(o for o in outcomes if not isinstance(o, Exception))
    assert identity.find_user_id("MALLORY") == winner.id


def test_concurrent_registrations_of_one_email_one_wins(components: Components) -> None:
    identity = components.identity
    outcomes = race(lambda i: register(identity, f"user{i}", email=spell("eve@example.com", i)))
    assert kinds(outcomes) == Counter({"ok": 1, "EmailTakenError": WRITERS - 1})
    assert all(isinstance(o, EmailTakenError) for o in outcomes if isinstance(o, Exception))


def test_concurrent_wrong_passwords_lock_exactly_at_the_limit(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    outcomes = race(lambda i: identity.authenticate("alice", f"wrong-{i}"))
    assert all(isinstance(o, AuthenticationError) for o in outcomes), kinds(outcomes)

    user = identity.get_user(alice.id)
    failures = [e for e in events_of(identity, alice.id) if isinstance(e, User.LoginFailed)]
    locks = [e for e in events_of(identity, alice.id) if isinstance(e, User.Locked)]
    assert kinds(outcomes) == Counter({"AuthenticationError": 5, "AccountLockedError": WRITERS - 5})
    assert [(e.reason, e.failed_login_count) for e in failures] == [("bad_password", n) for n in range(1, 6)]
    assert len(locks) == 1 and user.locked_until == locks[0].locked_until  # none slipped past

    try:
        identity.authenticate("alice", STRONG_PASSWORD)
        raise AssertionError("a correct password logged in while the account was locked")
    except AccountLockedError:
        pass
    identity.unlock_user(alice.id)
    assert identity.authenticate("alice", STRONG_PASSWORD).id == alice.id
