"""Per-request context: request id, client address, user agent and caller, captured once and
put in the audit context, so every event the request causes carries them."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from litestar.datastructures import MutableScopeHeaders
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from api.breaker import DATABASE_UNAVAILABLE, DatabaseBreaker
from api.edge import PRINCIPAL, request_id_of, sane_identifier
from api.follower import StreamFollower
from api.head import SharedHead
from api.security import Authenticator, Principal
from api.services import caller_has_seen
from api.usage import UsageRecorder
from domain.audit import AuditContext, acting_as
from domain.errors import AuthenticationError

AUTH_ERROR = "ledgerline.auth_error"
# Every command's answer sets it to the answer's X-Event-Position; a client that keeps cookies
# (browsers, most HTTP client sessions) so reads its own writes in lists and audit queries, even
# those made anonymously or as another actor (api.services.read_side_at).
HEAD_UNREACHABLE: tuple[type[BaseException], ...] = (*DATABASE_UNAVAILABLE, TimeoutError)
POSITION_COOKIE = "ledgerline_position"
COOKIE = "Path=/; HttpOnly; SameSite=Lax"  # its attributes


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Any]) -> str | None:
    """The caller's address: ``X-Forwarded-For`` counts only when it comes through trusted proxies."""
    if peer is None or not forwarded_for or not _trusted(peer, trusted):
        return peer
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        if not _trusted(hop, trusted):
            return hop
    return peer


def _trusted(address: str, trusted: Sequence[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


UNGUARDED = (
    "/health", "/live", "/ready", "/metrics", "/api/v1/health", "/api/v1/live", "/api/v1/ready", "/schema",
)  # fmt: skip


def request_context_middleware(
    authenticator: Authenticator,
    current: CurrentState,
    trusted_proxies: Sequence[Any],
    usage: UsageRecorder,
    breaker: DatabaseBreaker,
) -> Any:
    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            request_id = request_id_of(scope)
            guarded = not scope["path"].startswith(UNGUARDED)
            if guarded and not breaker.allow():
                await _unavailable(send)
                return
            peer = scope.get("client")[0] if scope.get("client") else None  # type: ignore[index]
            try:
                principal = await _principal(authenticator, current, headers, scope) if guarded else None
            except HEAD_UNREACHABLE:  # the head is out of reach: so is the store
                breaker.failed()
                await _unavailable(send)
                return
            address = client_address(peer, headers.get("x-forwarded-for"), trusted_proxies)
            if principal is not None and principal.credential_type == "api_key":
                usage.count(principal.credential_id, datetime.now(UTC), address)
            context = AuditContext(
                actor_id=principal.user_id if principal else None,
                actor_type="user" if principal else "anonymous",
                credential_id=principal.credential_id if principal else None,
                request_id=request_id,
                correlation_id=sane_identifier(headers.get("x-correlation-id")) or request_id,
                ip_address=address,
                user_agent=headers.get("user-agent", "")[:512] or None,
            )

            caller_seen = _seen_position(headers.get("cookie"))

            async def send_with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    response_headers = MutableScopeHeaders.from_message(message)
                    if (position := response_headers.get("X-Event-Position")) is not None:
                        # The command's own position, nothing the caller sent (two answers that
                        # cross may leave the older one: a client's later write sets it again).
                        response_headers.add("Set-Cookie", f"{POSITION_COOKIE}={position}; {COOKIE}")
                await send(message)

            with acting_as(context), caller_has_seen(caller_seen):
                await app(scope, receive, send_with_cookie)

        return handle

    return middleware


async def _unavailable(send: Send) -> None:
    body = json.dumps(
        {
            "type": "https://ledgerline.dev/problems/database-unavailable",
            "title": "The database is unavailable, try again shortly",
            "status": 503,
            "detail": "Requests fail fast while the database is down; service resumes by itself.",
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"retry-after", b"2"),
        (b"content-length", str(len(body)).encode()),
    ]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 503, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def _seen_position(cookie: str | None) -> int:
    """The position of the caller's last command, from the cookie its answer set (0: none)."""
    if not cookie or POSITION_COOKIE not in cookie:
        return 0
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == POSITION_COOKIE and value.isascii() and value.isdigit() and len(value) <= 19:
            return int(value)
    return 0


class CurrentState:
    """Brings this process's memory to the head of the stream before a request uses it."""

    def __init__(self, follower: StreamFollower, head: SharedHead) -> None:
        self.follower, self.head = follower, head
        self._reading = asyncio.Lock()  # one read of the stream on the loop; the others await it

    async def reach_head(self) -> None:
        head = await self.head.position()
        if self.follower.position >= head:
            return
        # Events past the follower (any process's, this one's too): read on the loop over the
        # head's connection; in a worker thread on SQLite, or while the follower's own thread
        # is reading.
        async with self._reading:
            if self.follower.position >= head:
                return
            if self.head.read_page is not None and await self.follower.reach(head, self.head.read_page):
                return
        await anyio.to_thread.run_sync(self.follower.catch_up, head)


async def _principal(
    authenticator: Authenticator, current: CurrentState, headers: dict[str, str], scope: Scope
) -> Principal | None:
    """Every guarded request first brings the process to the head of the stream (so it sees
    every change answered before it started); then its credential, from memory when cached."""
    api_key = headers.get("x-api-key")
    authorization = headers.get("authorization", "")
    bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
    await current.reach_head()  # a database outage here is every guarded request's 503
    try:
        if not api_key and not bearer:
            return None
        principal = authenticator.cached(api_key, bearer)
        if principal is None:
            read_at = current.follower.position
            principal = await anyio.to_thread.run_sync(authenticator.verify, api_key, bearer, read_at)
    except DATABASE_UNAVAILABLE as error:  # answered by the handlers' 503 (and counted by the breaker)
        scope.setdefault("state", {})[AUTH_ERROR] = error
        return None
    except AuthenticationError as error:
        scope.setdefault("state", {})[AUTH_ERROR] = error
        return None
    scope.setdefault("state", {})[PRINCIPAL] = principal
    return principal
