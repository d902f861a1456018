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


def test_health_live_and_ready_answer_under_api_v1_as_at_the_root(api: Api) -> None:
    for name in ("health", "live", "ready"):
        root, versioned = api.client.get(f"/{name}"), api.client.get(f"/api/v1/{name}")
        assert versioned.status_code == root.status_code, name
        assert versioned.json().keys() == root.json().keys(), name
    assert api.client.get("/api/v1/health").json() == api.client.get("/health").json()
    ready = api.client.get("/api/v1/ready").json()
    assert {p["name"] for p in ready["checks"]["projections"]} == {"users", "api_keys", "audit_log"}
    assert ready["checks"]["audit_chain"]["name"] == "audit_checkpoints"  # the signed checkpoints' follower
    paths = api.client.get("/schema/openapi.json").json()["paths"]
    for path in ("/api/v1/health", "/api/v1/live", "/api/v1/ready"):
        assert path in paths, path


def test_health_under_api_v1_answers_while_the_database_breaker_is_open(api: Api) -> None:
    breaker = api.client.app.state["breaker"]
    breaker.cool_down = 60  # no probe closes it during the test
    breaker.failed()
    try:
        refused = api.client.get("/api/v1/users/me", headers=api.as_user())
        assert refused.status_code == 503 and "fail fast" in refused.json()["detail"]
        for path in ("/health", "/api/v1/health", "/live", "/api/v1/live"):
            assert api.client.get(path).status_code == 200, path
        for path in ("/ready", "/api/v1/ready"):
            assert "checks" in api.client.get(path).json(), path  # the readiness report, not the breaker's
    finally:
        breaker._open.clear()
