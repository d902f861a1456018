"""Health routes (no authentication), at the root for probes and under ``/api/v1`` with the rest."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from api.authorization import authorize
from api.schemas import Health, Readiness, Status
from api.services import Services
from projections.read_side import ProjectionStatus, chain_status, status


@get(["/health", "/api/v1/health"], sync_to_thread=False, guards=[authorize])
def health(services: Services) -> Health:
    """Liveness with the version: answers without touching the database."""
    return Health(status="ok", version=services.version)


@get(["/live", "/api/v1/live"], sync_to_thread=False, guards=[authorize])
def live() -> Status:
    """The process answers (nothing else is checked)."""
    return Status(status="ok")


# Async around a thread rather than ``sync_to_thread``: Litestar wraps a sync handler once per
# path, and the second path's handler would then be named "AsyncCallable" for the guard.
READINESS = {  # the body is built as a dict (readiness below); its shape, for the document
    200: ResponseSpec(Readiness, description="Ready: every check passes"),
    503: ResponseSpec(Readiness, description="Not ready: ``failed`` names each failing check"),
}


@get(["/ready", "/api/v1/ready"], guards=[authorize], responses=READINESS)
async def ready(services: Services) -> Response[dict[str, Any]]:
    """Ready when the event store answers and no projection, nor the audit checkpointer, is
    failing, stalled or too far behind."""
    return await anyio.to_thread.run_sync(readiness, services)


CHECKPOINT_LAG_UNBOUNDED = 2**63


def readiness(services: Services) -> Response[dict[str, Any]]:
    """Ready when the event store answers and no projection, nor the audit checkpointer, is failing
    on an event, stalled, or further behind than the bound; ``failed`` names each check that is not."""
    stall = services.ready_stall_seconds
    try:
        followers = status(services.engine, services.identity, stall_seconds=stall)
        chain = chain_status(
            services.engine, services.identity, stall_seconds=stall, interval=services.checkpoint_seconds
        )
    except Exception as error:  # any failure to reach the store means "not ready"
        store = {"name": "event_store", "ok": False, "reason": "unreachable", "error": type(error).__name__}
        body = {"checks": {"event_store": store, "projections": [], "audit_chain": None}, "failed": [store]}
        return Response({"status": "unavailable", **body}, status_code=503)
    projections = [_check(p, services.ready_max_lag, stall) for p in followers]
    # Checkpoints trail the tree by design (every event is a leaf at commit): only a stall counts.
    sealer = _check(chain, CHECKPOINT_LAG_UNBOUNDED, stall)
    failed = [check for check in (*projections, sealer) if not check["ok"]]
    checks = {
        "event_store": {"name": "event_store", "ok": True},
        "projections": projections,
        "audit_chain": sealer,
    }
    return Response(
        {"status": "unavailable" if failed else "ok", "checks": checks, "failed": failed},
        status_code=503 if failed else 200,
    )


def _check(follower: ProjectionStatus, max_lag: int, stall_seconds: float) -> dict[str, Any]:
    check: dict[str, Any] = {
        "name": follower.name,
        "position": follower.position,
        "lag": follower.lag_events,
        "lag_seconds": round(follower.lag_seconds, 1),
        "state": follower.state,
        "ok": True,
    }
    reason = follower.problem(max_lag)
    if reason is None:
        return check
    check.update(ok=False, reason=reason)
    failure = follower.failure
    if failure is not None:
        check["failure"] = {
            "position": failure.position,
            "error_type": failure.error_type,
            "sqlstate": failure.sqlstate,
            "attempts": failure.attempts,
            "first_failed_at": failure.first_failed_at.isoformat(),
            "last_attempt_at": failure.last_attempt_at.isoformat(),
        }
        check["detail"] = f"cannot apply the event at position {failure.position} ({failure.error_type})"
    elif reason == "stalled":
        check["detail"] = (
            f"{follower.lag_events} events behind and not moving for {stall_seconds:g} s or more"
        )
    else:
        check["detail"] = f"{follower.lag_events} events behind, more than the bound of {max_lag}"
    return check
