"""Waiting for a position cannot stall the API: a far-future ``min_position`` is refused at once,
and only a few requests may wait at once (the rest: 503 at once), so other requests still get a
worker thread. Every GET takes ``min_position``, those reading the event store too."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from litestar.testing import TestClient

from api.services import WAITERS, Services
from tests.api.conftest import API_PROCESSES, PASSWORD, Api

ME = "/api/v1/users/me"
KEYS = "/api/v1/api-keys"
FLOOD = 60  # more requests at once than the handler threads (HANDLER_THREADS, at most 32)
PATIENCE = 20.0  # only hit when a request cannot get a thread at all (the defect); not a timing test


@pytest.fixture
def services(api: Api) -> Iterator[Services]:
    """The serving app's services, with a wait long enough to outlast each test: a request that
    waits holds its thread until the test releases it."""
    if API_PROCESSES != 1 or not isinstance(api.client, TestClient):
        pytest.skip("looks inside the one process")
    provided: Services = api.client.app.dependencies["services"].dependency()
    provided.read_timeout = 60.0
    yield provided


def send_all(api: Api, urls: list[str], headers: dict[str, str]) -> tuple[list[Any], list[threading.Thread]]:
    """Each url from its own thread, all at once; answers are appended as they come."""
    answers: list[Any] = []
    lock = threading.Lock()

    def send(url: str) -> None:
        response = api.client.get(url, headers=headers)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send, args=(url,), daemon=True) for url in urls]
    for thread in threads:
        thread.start()
    return answers, threads


def until(answers: list[Any], count: int) -> None:
    """Wait until ``count`` answers came (at most ``PATIENCE`` s: a request that gets no thread)."""
    finished = threading.Event()

    def watch() -> None:
        while len(answers) < count and not finished.is_set():
            finished.wait(0.02)
        finished.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    watcher.join(PATIENCE)
    finished.set()
    assert len(answers) >= count, f"only {len(answers)} of {count} requests were answered"


def test_a_flood_of_far_future_positions_is_refused_at_once_and_others_are_served(
    api: Api, services: Services
) -> None:
    answers, threads = send_all(api, [f"{KEYS}?min_position={10**15}"] * FLOOD, api.as_user())
    until(answers, FLOOD)  # none of them waits out the 60 s
    me = api.client.get(ME, headers=api.as_admin())
    assert me.status_code == 200, me.text
    assert {a.status_code for a in answers} == {503}
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers)
    for thread in threads:
        thread.join()


def test_only_a_few_requests_wait_at_once_and_the_rest_get_503_at_once(api: Api, services: Services) -> None:
    services.ready_max_lag = 20
    target = api.components.identity.head_position() + services.ready_max_lag  # waited for
    answers, threads = send_all(api, [f"{KEYS}?min_position={target}"] * FLOOD, api.as_user())
    until(answers, FLOOD - WAITERS)  # those that found every waiting place taken
    me = api.client.get(ME, headers=api.as_admin())
    assert me.status_code == 200, me.text  # while WAITERS requests still wait
    assert len(answers) == FLOOD - WAITERS and {a.status_code for a in answers} == {503}
    identity = api.components.identity
    while identity.head_position() < target:  # the awaited position is written: the waiters answer
        identity.issue_api_key(api.admin_id, name=f"k{identity.head_position()}", permissions={})
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * WAITERS + [503] * (FLOOD - WAITERS)


def test_every_read_of_the_event_store_takes_min_position(api: Api) -> None:
    identity = api.components.identity
    key_id = identity.issue_api_key(api.user_id, name="spare", permissions={}).result.id
    user = f"/api/v1/users/{api.user_id}"
    routes = [ME, "/api/v1/users/by-username/alice", user, f"{user}/history", f"{KEYS}/{key_id}",
              f"{KEYS}/{key_id}/history"]  # fmt: skip
    for route in routes:
        assert api.client.get(route, headers=api.as_admin()).status_code == 200, route
        future = api.client.get(f"{route}?min_position={10**15}", headers=api.as_admin())
        assert future.status_code == 503, (route, future.status_code)
        assert int(future.headers["Retry-After"]) >= 1


def test_a_read_of_the_event_store_waits_for_a_position_written_meanwhile(api: Api) -> None:
    login = api.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    bearer = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}  # tokens count no usage
    identity = api.components.identity
    head = identity.head_position()  # nothing but the change below writes from here on
    later = threading.Timer(0.3, identity.update_user, args=(api.user_id,), kwargs={"full_name": "Alice B"})
    later.start()
    waited = api.client.get(f"{ME}?min_position={head + 1}", headers=bearer)
    later.join()
    assert waited.status_code == 200, waited.text
    assert waited.json()["data"]["full_name"] == "Alice B"


def test_a_500_logs_its_error_type_and_the_requests_id_never_its_text(
    api: Api, services: Services, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    leak = "leak.me@example.com"

    def failing(_: str) -> None:
        raise sqlalchemy.exc.IntegrityError(
            f"SELECT 1 WHERE email = '{leak}'", {"email": leak}, ValueError(leak)
        )

    monkeypatch.setattr(services.identity, "find_user_id", failing)
    caplog.set_level(logging.DEBUG)
    answer = api.client.get(
        "/api/v1/users/by-username/x", headers={**api.as_admin(), "X-Request-ID": "a b\n"}
    )
    assert answer.status_code == 500 and leak not in answer.text
    records = [r for r in caplog.records if r.getMessage().startswith("unhandled error")]
    assert records and records[0].request_id == answer.headers["X-Request-ID"] != "a b\n"  # type: ignore[attr-defined]
    assert "ValueError" in records[0].getMessage()  # what the driver raised (ErrorSummary)
    for record in caplog.records:
        said = [record.getMessage(), repr(record.args), record.exc_text or "", repr(vars(record))]
        if record.exc_info:
            said.append("".join(traceback.format_exception(*record.exc_info)))
        assert not any(leak in text for text in said), record
