"""The edge of every HTTP exchange, outside Litestar's routing and exception handling, so that a
404 or 405 (answered before any route's middleware runs) and a 500 get what every answer gets:
the request id (``X-Request-ID``), the access log line and the metrics."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics
from api.access_log import AccessLog

SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID = "ledgerline.request_id"  # keys of the scope's state
PRINCIPAL = "ledgerline.principal"


def sane_identifier(given: str | None) -> str | None:
    """A client's request or correlation id, if it is one (both are stored in plain text in every
    event: nothing that a store cannot hold or a log reader could be fooled by)."""
    return given if given is not None and SANE_ID.fullmatch(given) else None


def request_id_of(scope: Scope) -> str:
    """The request's id: the client's ``X-Request-ID`` when sane, else a new one; decided once."""
    state = scope.setdefault("state", {})
    request_id = state.get(REQUEST_ID)
    if request_id is None:
        given = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
        request_id = sane_identifier(given.decode("latin-1") if given else None) or uuid.uuid4().hex
        state[REQUEST_ID] = request_id
    return request_id


def edge(app: ASGIApp, access_log: AccessLog, *, measure: bool) -> ASGIApp:
    """``measure``: count the request in the metrics (``LEDGERLINE_METRICS``)."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started, status, method = time.perf_counter(), 500, str(scope.get("method", ""))
        request_id = request_id_of(scope)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["X-Request-ID"] = request_id
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route: str | None = scope.get("path_template")  # set once Litestar's router matched one
            if measure:
                metrics.observe(method, route, status, seconds)
            if access_log.enabled:
                principal: Any = scope["state"].get(PRINCIPAL)
                access_log.record(
                    method=method,
                    path=scope["path"],
                    route=route,
                    status=status,
                    duration_ms=seconds * 1000,
                    request_id=request_id,
                    actor_id=principal.user_id if principal else None,
                    credential_id=principal.credential_id if principal else None,
                )

    return handle
