"""Credentials end when the event that ends them is written, whatever is in flight: a key revoked
while its first uses are being verified, a session whose password changed in the same second,
sessions of a deleted user who is restored, login budgets under other spellings of the login."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from api.rate_limit import login_subject
from tests.api.conftest import PASSWORD, USER_SCOPES, Api

ME = "/api/v1/users/me"
REPETITIONS = 100
AT_ONCE = 10  # repetitions run side by side (each waits out the contract's second)
SENDERS = 4  # concurrent first uses of each new key
GRACE = 1.0  # the contract: refused in every process within one second of the revoke's answer


def race_revocations(
    issue: Callable[[], tuple[str, str]],
    revoke: Callable[[str], None],
    use: Callable[[int, str], int],
) -> list[float]:
    """Per repetition: a new key, ``SENDERS`` threads using it from its first (uncached) use on,
    revoked while those are in flight, used on until ``GRACE`` + 0.2 s after the revoke answered.
    Returns, for every use answered 200 that was sent after the revoke answered, how long after."""
    late: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def repetition() -> None:
        key, key_id = issue()
        start = threading.Barrier(SENDERS + 1)
        answered: list[float] = []

        def sender(n: int) -> None:
            start.wait()
            while not answered or time.monotonic() < answered[0] + GRACE + 0.2:
                sent = time.monotonic()
                status = use(n, key)
                if status == 200 and answered and sent > answered[0]:
                    with lock:
                        late.append(sent - answered[0])

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
        for thread in threads:
            thread.start()
        start.wait()
        time.sleep(random.uniform(0, 0.004))  # the first verifications are in flight
        revoke(key_id)
        answered.append(time.monotonic())
        for thread in threads:
            thread.join()

    def guarded() -> None:
        try:
            repetition()
        except BaseException as error:  # reported by the test, not lost in a thread
            failures.append(error)

    for _ in range(REPETITIONS // AT_ONCE):
        batch = [threading.Thread(target=guarded) for _ in range(AT_ONCE)]
        for thread in batch:
            thread.start()
        for thread in batch:
            thread.join()
    assert not failures, failures[0]
    return late


def test_a_key_revoked_while_its_first_uses_are_in_flight_is_refused_from_then_on(api: Api) -> None:
    identity = api.components.identity

    def issue() -> tuple[str, str]:
        issued = identity.issue_api_key(api.user_id, name=f"k{uuid4().hex}", permissions=USER_SCOPES)
        return issued.key, str(issued.result.id)

    def revoke(key_id: str) -> None:
        response = api.client.post(f"/api/v1/api-keys/{key_id}/revoke", headers=api.as_admin())
        assert response.status_code == 200, response.text

    def use(_: int, key: str) -> int:
        return api.client.get(ME, headers={"X-API-Key": key}).status_code

    late = race_revocations(issue, revoke, use)
    assert [t for t in late if t > GRACE] == [], "a revoked key was accepted after the contract's second"
    assert late == [], f"accepted {len(late)} times after the revoke answered (at most {max(late):.3f} s)"


def login(api: Api, username: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    response = api.client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def test_a_password_change_in_the_same_second_ends_the_session_and_its_tokens(api: Api) -> None:
    password = PASSWORD
    for n in range(3):
        old = login(api, password=password)
        bearer = {"Authorization": f"Bearer {old['access_token']}"}
        new_password = f"Newer-Pass-{n}x"
        changed = api.client.post(
            f"{ME}/change-password",
            json={"current_password": password, "new_password": new_password},
            headers=api.as_user(),
        )
        assert changed.status_code == 200, changed.text
        password = new_password
        refreshed = api.client.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert refreshed.status_code == 401, "the session outlived the password change"
        assert api.client.get(ME, headers=bearer).status_code == 401
    fresh = login(api, password=password)
    assert api.client.get(ME, headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 200
    renewed = api.client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert renewed.status_code == 200, renewed.text


def test_restoring_a_deleted_user_revives_neither_sessions_nor_keys(api: Api) -> None:
    session = login(api)
    bearer = {"Authorization": f"Bearer {session['access_token']}"}
    assert api.client.get(ME, headers=bearer).status_code == 200
    user = f"/api/v1/users/{api.user_id}"
    assert api.client.delete(user, headers=api.as_admin()).status_code == 200
    assert api.client.post(f"{user}/restore", headers=api.as_admin()).status_code == 200
    assert api.client.get(ME, headers=bearer).status_code == 401
    assert api.client.get(ME, headers=api.as_user()).status_code == 401  # the delete revoked her key
    refreshed = api.client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refreshed.status_code == 401
    fresh = login(api)  # she may log in again: a new session
    assert api.client.get(ME, headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 200


def test_spellings_of_one_login_share_one_budget(api: Api) -> None:
    identity = api.components.identity
    spellings = ["alice", "ALICE", "alice@example.com", " Alice@Example.COM ", "\talice@EXAMPLE.com"]
    assert {login_subject(identity, spelling) for spelling in spellings} == {f"user:{api.user_id}"}
    assert login_subject(identity, " Nobody@Example.com") == login_subject(identity, "nobody@example.com")


def test_reactivating_a_user_revives_her_keys_but_not_her_sessions(api: Api) -> None:
    session = login(api)
    bearer = {"Authorization": f"Bearer {session['access_token']}"}
    assert api.client.get(ME, headers=bearer).status_code == 200
    user = f"/api/v1/users/{api.user_id}"
    assert api.client.post(f"{user}/deactivate", headers=api.as_admin()).status_code == 200
    assert api.client.get(ME, headers=bearer).status_code == 401
    assert api.client.get(ME, headers=api.as_user()).status_code == 401
    assert api.client.post(f"{user}/activate", headers=api.as_admin()).status_code == 200
    assert api.client.get(ME, headers=bearer).status_code == 401, "the old access token works again"
    refreshed = api.client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refreshed.status_code == 401, "the old refresh token works again"
    assert api.client.get(ME, headers=api.as_user()).status_code == 200  # keys: suspended, then back
    fresh = login(api)
    assert api.client.get(ME, headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 200
