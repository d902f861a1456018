"""``create_app``: the Litestar application, assembled from services built by the caller."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from litestar import Litestar, Request
from litestar.config.response_cache import ResponseCacheConfig
from litestar.datastructures import State
from litestar.di import Provide

from api.access_log import AccessLog
from api.authorization import principal_of
from api.bodies import StrictRequest
from api.breaker import DatabaseBreaker
from api.context import CurrentState, request_context_middleware
from api.controllers.api_keys import ApiKeysController
from api.controllers.audit_evidence import AuditEvidenceController
from api.controllers.audit_logs import AuditLogsController
from api.controllers.audit_proofs import AuditProofsController
from api.controllers.auth import AuthController
from api.controllers.health import health, live, ready
from api.controllers.metrics import metrics
from api.controllers.subscriptions import SubscriptionsController
from api.controllers.users import UsersController
from api.docs_assets import docs_assets, openapi_config
from api.edge import edge
from api.follower import StreamFollower
from api.head import shared_head
from api.metrics import Metrics
from api.openapi_docs import ClosedBodies, DocumentOperations
from api.options import CompleteAllow
from api.problems import problem_response
from api.security import Authenticator, Principal
from api.services import HANDLER_THREADS, Services
from api.usage import UsageRecorder

MAX_BODY = 64 * 1024


def create_app(
    services: Services, *, trusted_proxies: Sequence[str] = (), watch_credentials: bool = True
) -> Litestar:
    cache = services.credential_cache
    stop = threading.Event()
    follower = services.follower = StreamFollower(services.identity, cache, stop)
    current = CurrentState(follower, shared_head(services.identity, services.database))
    authenticator = Authenticator(services.identity, services.tokens, cache)
    access_log = AccessLog()
    networks = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies]
    usage = services.usage = UsageRecorder(
        services.identity,
        stop,
        interval=services.usage_flush_seconds,
        on_backlog=Metrics.usage_backlog if services.measure else None,
    )
    if services.measure:
        services.metrics = Metrics(
            services.engine,
            services.identity,
            stall_seconds=services.ready_stall_seconds,
            interval=services.checkpoint_seconds,
        )
    breaker = DatabaseBreaker(
        probe=services.database_answers,
        recover=services.drop_dead_connections,
        on_change=Metrics.breaker_changed if services.measure else None,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # The one pool of worker threads for blocking calls (handlers, credential lookups).
        anyio.to_thread.current_default_thread_limiter().total_tokens = HANDLER_THREADS
        if watch_credentials:  # requests catch the follower up anyway; this keeps idle caches fresh
            follower.start()
        usage.start()
        try:
            yield
        finally:
            try:
                stop.set()  # the usage flusher writes what it counted, then ends
                await anyio.to_thread.run_sync(usage.join, 30)
                await current.head.close()
            finally:
                access_log.flush()

    def principal(request: Request[Any, Any, Any], services: Services) -> Principal:
        """Takes ``services`` so that Litestar resolves the two one after the other: dependencies
        of one level are resolved in a task group of their own, a cost on every request."""
        return principal_of(request)

    app = Litestar(
        route_handlers=[
            health,
            live,
            ready,
            metrics,
            AuthController,
            UsersController,
            ApiKeysController,
            AuditLogsController,
            AuditEvidenceController,
            AuditProofsController,
            docs_assets(),
            SubscriptionsController,
        ],
        dependencies={
            "services": Provide(lambda: services, sync_to_thread=False),
            "principal": Provide(principal, sync_to_thread=False),
        },
        middleware=[request_context_middleware(authenticator, current, networks, usage, breaker)],
        state=State({"breaker": breaker}),
        exception_handlers={Exception: problem_response},
        lifespan=[lifespan],
        request_max_body_size=MAX_BODY,
        request_class=StrictRequest,  # bodies decoded strictly into their declared type
        plugins=[DocumentOperations(), ClosedBodies(), CompleteAllow(), *_tracing(services)],  # see each
        logging_config=None,  # the process's own (JSON) logging stays in charge
        response_cache_config=ResponseCacheConfig(),
        openapi_config=openapi_config(services.version),
    )
    # Around Litestar's router and exception handling: 404, 405 and 500 are seen there too.
    app.asgi_handler = edge(app.asgi_handler, access_log, measure=services.measure)
    return app


def _tracing(services: Services) -> list[Any]:
    """Off: nothing at all (not even an import)."""
    if not services.tracing:
        return []
    from api.tracing import tracing_plugins

    return tracing_plugins(services.tracer_provider)
