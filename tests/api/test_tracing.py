"""OpenTelemetry tracing (LEDGERLINE_TRACING, decision 0016): off, the application carries
nothing of it; on, one span per request named by the route's template, holding no path, query
string, address or user agent a caller sent, and none for the probes or /metrics."""

from __future__ import annotations

from dataclasses import replace

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.services import Services
from ledgerline.bootstrap import Components, build_app
from ledgerline.settings import Settings, SettingsError


def test_off_the_application_has_no_tracing_at_all(components: Components) -> None:
    app = build_app(components, watch_credentials=False)
    with pytest.raises(KeyError):
        app.plugins.get("OpenTelemetryPlugin")
    assert not any("opentelemetry" in repr(m).lower() for m in app.middleware)


def test_on_a_span_per_request_named_by_route_without_what_the_caller_sent(
    components: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    original = Services.__init__

    def traced(self: Services, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.tracer_provider = provider

    monkeypatch.setattr(Services, "__init__", traced)
    components.settings = replace(components.settings, tracing=True)
    identity = components.identity
    user = identity.register_user(
        username="carol.private", email="carol@example.com", password="Correct-Horse-9", is_superuser=True
    )
    key = identity.issue_api_key(user.id, name="k", permissions={"*": True}).key
    with TestClient(app=build_app(components, watch_credentials=False)) as client:
        headers = {"X-API-Key": key, "User-Agent": "secret-agent/1", "X-Request-ID": "trace-me"}
        assert (
            client.get("/api/v1/users/by-username/carol.private?token=s3cret", headers=headers).status_code
            == 200
        )
        assert client.get("/api/v1/no/carol@example.com", headers=headers).status_code == 404
        for probe in ("/health", "/ready", "/metrics", "/api/v1/live"):
            client.get(probe)
    spans = exporter.get_finished_spans()
    names = sorted(span.name for span in spans)
    assert names == ["GET", "GET /api/v1/users/by-username/{username}"], names  # the 404: no route
    routed = next(span for span in spans if span.name != "GET")
    assert routed.attributes["http.route"] == "/api/v1/users/by-username/{username}"
    assert routed.attributes["ledgerline.request_id"] == "trace-me"
    text = repr([(span.name, dict(span.attributes or {})) for span in spans])
    for sent in ("carol", "s3cret", "token", "secret-agent", "127.0.0.1", "testclient", key):
        assert sent not in text, sent


def test_tracing_needs_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({"LEDGERLINE_TRACING": "true"}).tracing
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(SettingsError, match=r"ledgerline\[tracing\]"):
        Settings.from_env({"LEDGERLINE_TRACING": "true"})
