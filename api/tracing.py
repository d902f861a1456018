"""OpenTelemetry tracing, only with ``LEDGERLINE_TRACING=true`` (decision 0016): one server span
per request through Litestar's OpenTelemetry plugin, exported over OTLP as the standard
``OTEL_*`` variables say (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``...).

Off, this module is not even imported: the application is built exactly as without it. On, a
span says what a metric label says and nothing more: named ``METHOD route-template`` once routed
(``METHOD`` alone when no route matched), the path, query string, client address and user agent
the instrumentation records replaced (a path can hold a username, a query string a token)."""

from __future__ import annotations

from typing import Any

from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import ASGIApp, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from api.edge import request_id_of

REDACTED = "[redacted]"
# What the ASGI instrumentation records of the request that a caller chose (old and new names).
HIDDEN = ("http.target", "url.path", "url.query", "http.client_ip", "client.address", "net.peer.ip",
          "net.peer.port", "client.port", "http.user_agent", "user_agent.original")  # fmt: skip
UNTRACED = ["^/metrics", "^/health", "^/live", "^/ready", "^/api/v1/(health|live|ready)", "^/schema"]


def otlp_provider() -> TracerProvider:
    """Spans in batches to the OTLP/HTTP endpoint of the ``OTEL_*`` environment."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "ledgerline"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _unnamed(scope: Scope) -> tuple[str, dict[str, Any]]:
    return str(scope.get("method", "")) or "websocket", {}


def _hide_request(span: Any, scope: dict[str, Any]) -> None:
    if not span.is_recording():
        return
    for key in HIDDEN:
        span.set_attribute(key, REDACTED)
    server = scope.get("server") or ("", None)
    span.set_attribute("http.url", f"{scope.get('scheme', 'http')}://{server[0]}")
    span.set_attribute("url.full", f"{scope.get('scheme', 'http')}://{server[0]}")
    span.set_attribute("ledgerline.request_id", request_id_of(scope))  # type: ignore[arg-type]


def _name_by_route(app: ASGIApp) -> ASGIApp:
    """Route middleware: the request's span takes the route's template as its name."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()
        if span.is_recording() and scope["type"] == "http":
            template = scope.get("path_template") or ""
            span.update_name(f"{scope.get('method', '')} {template}")
            span.set_attribute("http.route", template)
        await app(scope, receive, send)

    return handle


class _RouteNames(InitPlugin):
    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.append(_name_by_route)
        return app_config


def tracing_plugins(provider: TracerProvider | None = None) -> list[InitPlugin]:
    config = OpenTelemetryConfig(
        tracer_provider=provider or otlp_provider(),
        scope_span_details_extractor=_unnamed,
        server_request_hook_handler=_hide_request,
        exclude=UNTRACED,
        exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
    )
    return [OpenTelemetryPlugin(config), _RouteNames()]
