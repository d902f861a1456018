"""While PostgreSQL refuses connections the API answers 503 at once (problem+json, Retry-After)
instead of hanging or 500; when it returns, service resumes by itself."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from litestar.testing import TestClient
from psycopg import sql

from ledgerline.bootstrap import build, build_app
from tests.conftest import PG_ADMIN_DSN, settings_for


def set_connections(database: str, allowed: bool) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.SQL(str(allowed).lower())
            )
        )
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
            )


def test_outage_gives_fast_503s_and_service_resumes(pg_database: str, tmp_path: Path) -> None:
    database = pg_database.rsplit("/", 1)[1]
    components = build(settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE="3"), init=True)
    admin = components.identity.register_user(
        username="root", email="r@example.com", password="Correct-Horse-9", is_superuser=True
    )
    key = components.identity.issue_api_key(admin.id, name="k", permissions={"*": True}).key
    headers = {"X-API-Key": key}
    try:
        with TestClient(app=build_app(components, watch_credentials=False)) as client:
            assert client.get(f"/api/v1/users/{admin.id}", headers=headers).status_code == 200
            set_connections(database, allowed=False)
            try:
                # The first request finds out (the store's own retries make it slow)...
                first = client.get(f"/api/v1/users/{admin.id}", headers=headers)
                assert first.status_code == 503 and "Retry-After" in first.headers, first.text
                assert first.headers["content-type"].startswith("application/problem+json")
                # ...then requests fail fast while the breaker is open.
                for _ in range(5):
                    started = time.monotonic()
                    response = client.get(f"/api/v1/users/{admin.id}", headers=headers)
                    assert response.status_code == 503 and "fail fast" in response.json()["detail"]
                    assert time.monotonic() - started < 1.0
            finally:
                set_connections(database, allowed=True)
            deadline = time.monotonic() + 30
            while client.get(f"/api/v1/users/{admin.id}", headers=headers).status_code != 200:
                assert time.monotonic() < deadline, "the API did not recover after the database returned"
                time.sleep(0.5)
    finally:
        components.close()
