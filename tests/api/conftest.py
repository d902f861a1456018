"""A real Litestar app over a real store (SQLite and PostgreSQL), with the projector running."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from ledgerline.bootstrap import Components, build_app
from projections.worker import FollowingWorker, start_sealer, start_workers

PASSWORD = "Correct-Horse-9"


@dataclass
class Api:
    client: TestClient[Any]
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


@pytest.fixture
def api(components: Components) -> Iterator[Api]:
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
        start_sealer(components.sealer(), stop),
    ]
    try:
        with TestClient(app=build_app(components)) as client:
            yield Api(client, components, admin.id, admin_key, user.id, user_key)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
