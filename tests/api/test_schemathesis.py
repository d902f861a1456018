"""Property-based run over the OpenAPI document (schemathesis): whatever the input, no 5xx and
no response that contradicts the documented schema. SQLite store, admin credentials."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from eventstore.passwords import Passwords
from ledgerline.bootstrap import build, build_app
from projections.worker import start_workers
from tests.conftest import FAST_ARGON2, settings_for

ADMIN: dict[str, str] = {}


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[Any]:
    components = build(
        settings_for(f"sqlite:///{tmp_path / 's.sqlite3'}", tmp_path, LEDGERLINE_LOGIN_FAILURE_FLOOR_MS="0"),
        init=True,
        passwords=Passwords(FAST_ARGON2),
    )
    admin = components.identity.register_user(
        username="root", email="root@example.com", password="Correct-Horse-9", is_superuser=True
    )
    ADMIN["X-API-Key"] = components.identity.issue_api_key(
        admin.id, name="admin", permissions={"*": True}
    ).key
    stop = threading.Event()
    workers = start_workers(
        list(components.projections.values()),
        components.identity,
        components.engine,
        components.settings.database,
        stop,
    )
    try:
        yield schemathesis.openapi.from_asgi("/schema/openapi.json", build_app(components))
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
        components.close()


def test_no_server_error_and_responses_match_the_schema(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25  # every route is documented

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            case.call_and_validate(headers=ADMIN, checks=[not_a_server_error, response_schema_conformance])

        run()
