"""Readiness that does not lie (issue 14, point 3): with the projector stopped, once a read
of the API answers 503 because its read model is behind, `/ready` (root and /api/v1) answers
503 too, naming the stalled or lagging check; both bounds come from the settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build, build_app
from projections import read_side
from projections.worker import FollowingWorker, start_checkpointer, start_workers
from tests.conftest import settings_for

READY = ("/ready", "/api/v1/ready")


@pytest.fixture
def stopped_projector(
    database_url: str, tmp_path: Path, fast_passwords: Passwords, request: pytest.FixtureRequest
) -> Iterator[tuple[Components, str]]:
    """Components whose projector ran, caught up and then stopped; an admin key."""
    settings = settings_for(database_url, tmp_path, LEDGERLINE_POOL_SIZE="3", **request.param)
    components = build(settings, init=True, passwords=fast_passwords)
    try:
        admin = components.identity.register_user(
            username="root", email="root@example.com", password="Correct-Horse-9", is_superuser=True
        )
        key = components.identity.issue_api_key(admin.id, name="admin", permissions={"*": True}).key
        stop = threading.Event()
        workers: list[FollowingWorker] = [
            *start_workers(list(components.projections.values()), components.identity, components.engine,
                           settings.database, stop),
            start_checkpointer(components.checkpointer(), settings.database, stop),
        ]  # fmt: skip
        head = components.identity.head_position()
        assert read_side.wait_for_position(components.engine, head, timeout=20)
        deadline = time.monotonic() + 20
        while read_side.chain_status(components.engine, components.identity).position < head:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        yield components, key
    finally:
        components.close()


def failed_checks(client: Any) -> list[tuple[int, list[tuple[str, str]]]]:
    answers = [client.get(path) for path in READY]
    return [(a.status_code, sorted((c["name"], c["reason"]) for c in a.json()["failed"])) for a in answers]


STOPPED = sorted(("audit_checkpoints", "api_keys", "audit_log", "users"))


@pytest.mark.parametrize(
    "stopped_projector", [{"LEDGERLINE_READY_STALL_SECONDS": "1"}], indirect=True, ids=["stall-1s"]
)
def test_ready_is_503_once_the_stopped_projector_is_behind_for_the_stall_window(
    stopped_projector: tuple[Components, str],
) -> None:
    components, key = stopped_projector
    with TestClient(app=build_app(components, watch_credentials=False)) as client:
        assert {status for status, _ in failed_checks(client)} == {200}
        created = client.post("/api/v1/api-keys", json={"name": "new", "permissions": {}},
                              headers={"X-API-Key": key})  # fmt: skip
        assert created.status_code == 201
        # The read model cannot show the caller its own write: the API says so...
        listed = client.get("/api/v1/api-keys", headers={"X-API-Key": key})
        assert listed.status_code == 503 and int(listed.headers["Retry-After"]) >= 1
        # ...and so does /ready once the projector has not moved for the window.
        deadline = time.monotonic() + 15
        while (checks := failed_checks(client))[0][0] != 503:
            assert time.monotonic() < deadline, checks
            time.sleep(0.2)
        for status, failed in failed_checks(client):
            assert status == 503
            assert [name for name, _ in failed] == STOPPED
            assert {reason for _, reason in failed} == {"stalled"}


@pytest.mark.parametrize(
    "stopped_projector", [{"LEDGERLINE_READY_MAX_LAG": "0"}], indirect=True, ids=["max-lag-0"]
)
def test_ready_is_503_at_once_when_a_projection_is_further_behind_than_the_bound(
    stopped_projector: tuple[Components, str],
) -> None:
    components, key = stopped_projector
    with TestClient(app=build_app(components, watch_credentials=False)) as client:
        created = client.post("/api/v1/api-keys", json={"name": "new", "permissions": {}},
                              headers={"X-API-Key": key})  # fmt: skip
        assert created.status_code == 201
        for status, failed in failed_checks(client):  # within the 30 s stall window: the bound
            assert status == 503
            assert ("api_keys", "lagging") in failed and ("users", "lagging") in failed
            assert "audit_checkpoints" not in {name for name, _ in failed}  # its lag has no bound
        body = client.get("/ready").json()
        lagging = next(check for check in body["failed"] if check["name"] == "api_keys")
        assert lagging["lag"] >= 1 and "more than the bound of 0" in lagging["detail"]
