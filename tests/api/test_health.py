"""Health routes and the OpenAPI document, through Litestar's test client."""

from __future__ import annotations

from litestar.testing import TestClient

from api.app import create_app


def test_health_live_and_openapi() -> None:
    with TestClient(app=create_app(version="9.9.9")) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "version": "9.9.9"}
        assert client.get("/live").status_code == 200
        paths = client.get("/schema/openapi.json").json()["paths"]
        assert {"/health", "/live"} <= set(paths)
