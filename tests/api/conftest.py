"""A real Litestar app over a real store (SQLite and PostgreSQL), with the projector running.

With ``LEDGERLINE_TEST_API_PROCESSES=2`` the client talks to two real ``ledgerline serve``
processes on the PostgreSQL store instead, each request to the other one (SQLite runs skip):
every test then also proves that a client reads its own writes on any process.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from litestar.testing import TestClient

from ledgerline.bootstrap import Components, build_app
from projections.worker import FollowingWorker, start_checkpointer, start_workers
from tests.api.processes import FAST_ARGON2_ENV, Alternating, serving

API_PROCESSES = int(os.environ.get("LEDGERLINE_TEST_API_PROCESSES", "1"))
ONE_PROCESS_ONLY = {  # tests that look inside the one process
    "test_login_is_rate_limited_per_client",  # the login limit is counted per process (by design)
    "test_secrets_stay_out_of_bodies_and_logs",  # its log records
    "test_every_route_about_someones_user_or_key_says_whose_it_is",  # its routes
    "test_health_under_api_v1_answers_while_the_database_breaker_is_open",  # its breaker
    "test_the_breaker_gauge_follows_the_breaker",  # its breaker
    "test_the_contracts_metrics_count_by_route_template_and_the_store_reports_progress",  # its counts
}
IN_PROCESS_FIXTURES = {"saves"}  # spies on this process's appends

PASSWORD = "Correct-Horse-9"


@dataclass
class Api:
    client: TestClient[Any] | httpx.Client
    components: Components
    admin_id: UUID
    admin_key: str
    user_id: UUID
    user_key: str  # full rights of a regular user's key

    def as_admin(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_key}

    def as_user(self) -> dict[str, str]:
        return {"X-API-Key": self.user_key}


USER_SCOPES = {"users:read": True, "users:write": True, "api_keys:read": True, "api_keys:write": True}


@contextlib.contextmanager
def api_client(
    components: Components, database_url: str, data_dir: Path, in_process: bool
) -> Iterator[httpx.Client]:
    if API_PROCESSES == 1:
        with TestClient(app=build_app(components)) as client:
            yield client
        return
    if not components.settings.database.is_postgres:
        pytest.skip("several API processes need PostgreSQL")
    if in_process:
        pytest.skip("a test of what happens inside one process")
    env = {**FAST_ARGON2_ENV, "LEDGERLINE_USAGE_FLUSH_MS": "200"}
    with (
        serving(database_url, data_dir, API_PROCESSES, env) as (urls, _),
        httpx.Client(base_url="http://ledgerline", transport=Alternating(urls), timeout=30) as client,
    ):
        yield client


@pytest.fixture
def api(
    components: Components, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Api]:
    identity = components.identity
    admin = identity.register_user(
        username="root", email="root@example.com", password=PASSWORD, is_superuser=True
    )
    admin_key = identity.issue_api_key(admin.id, name="admin", permissions={"*": True}).key
    user = identity.register_user(username="alice", email="alice@example.com", password=PASSWORD)
    user_key = identity.issue_api_key(user.id, name="laptop", permissions=USER_SCOPES).key
    stop = threading.Event()
    workers: list[FollowingWorker] = [
        *start_workers(
            list(components.projections.values()),
            identity,
            components.engine,
            components.settings.database,
            stop,
        ),
        start_checkpointer(components.checkpointer(), components.settings.database, stop),
    ]
    try:
        in_process = request.node.originalname in ONE_PROCESS_ONLY or bool(
            IN_PROCESS_FIXTURES & set(request.fixturenames)
        )
        with api_client(components, database_url, tmp_path, in_process) as client:
            yield Api(client, components, admin.id, admin_key, user.id, user_key)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
