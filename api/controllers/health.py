"""Health routes (no authentication)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get

from api.authorization import authorize
from api.schemas import Health
from api.services import Services
from projections.read_side import status


@get("/health", sync_to_thread=False, guards=[authorize])
def health(services: Services) -> Health:
    return Health(status="ok", version=services.version)


@get("/live", sync_to_thread=False, guards=[authorize])
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", sync_to_thread=True, guards=[authorize])
def ready(services: Services) -> Response[dict[str, Any]]:
    """Ready when the event store answers and every projection lags less than the bound."""
    checks: dict[str, Any] = {}
    try:
        projections = status(services.engine, services.identity)
        checks["event_store"] = {"ok": True}
    except Exception as error:  # any failure to reach the store means "not ready"
        checks["event_store"] = {"ok": False, "error": type(error).__name__}
        projections = []
    checks["projections"] = [
        {
            "name": p.name,
            "position": p.position,
            "lag": p.lag_events,
            "ok": p.lag_events <= services.ready_max_lag,
        }
        for p in projections
    ]
    ok = checks["event_store"]["ok"] and all(p["ok"] for p in checks["projections"])
    return Response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
