"""Health routes and the OpenAPI document."""

from __future__ import annotations

from tests.api.conftest import Api


def test_health_live_ready_and_openapi(api: Api) -> None:
    health = api.client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["version"]
    assert health.headers["X-Request-ID"]
    assert api.client.get("/live").status_code == 200
    ready = api.client.get("/ready")
    assert ready.status_code in (200, 503)
    assert {p["name"] for p in ready.json()["checks"]["projections"]} == {"users", "api_keys", "audit_log"}
    paths = api.client.get("/schema/openapi.json").json()["paths"]
    for path in (
        "/health",
        "/ready",
        "/api/v1/users",
        "/api/v1/users/{user_id}",
        "/api/v1/api-keys",
        "/api/v1/auth/login",
    ):
        assert path in paths, path


def test_request_id_is_echoed_when_sane(api: Api) -> None:
    assert api.client.get("/live", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = api.client.get("/live", headers={"X-Request-ID": "bad id with spaces"}).headers[
        "X-Request-ID"
    ]
    assert generated != "bad id with spaces" and len(generated) == 32
