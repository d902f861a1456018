"""``GET /metrics`` (issue 14, contract v1.1 "Operations"): the contract's names, route templates
and never raw paths, nothing a caller chose as a label, no personal data, the store's progress;
a request id on every answer, those of Litestar's router (404, 405) and a 500 included; the
Grafana dashboard asks only for what is exported."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ledgerline.bootstrap import Components, build_app
from tests.api.conftest import Api

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
CONTRACT = (
    "ledgerline_http_requests_total",
    "ledgerline_http_request_duration_seconds",
    "ledgerline_events_appended_total",
    "ledgerline_projection_position",
    "ledgerline_projection_lag_events",
    "ledgerline_database_breaker_open",
)


def scrape(client: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)]."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def requests_of(samples: dict[str, Any], **labels: str) -> float:
    return sum(
        value
        for got, value in samples.get("ledgerline_http_requests_total", [])
        if labels.items() <= got.items()
    )


def test_the_contracts_metrics_count_by_route_template_and_the_store_reports_progress(api: Api) -> None:
    before = scrape(api.client)
    for _ in range(3):
        assert api.client.get(f"/api/v1/users/{api.user_id}", headers=api.as_admin()).status_code == 200
    created = api.client.post(
        "/api/v1/api-keys", json={"name": "m", "permissions": {}}, headers=api.as_user()
    )
    assert created.status_code == 201
    after = scrape(api.client)

    for name in CONTRACT:
        assert any(sample.startswith(name) for sample in after), name
    route = "/api/v1/users/{user_id}"
    assert (
        requests_of(after, method="GET", route=route, status="200")
        - requests_of(before, method="GET", route=route, status="200")
        == 3
    )
    assert requests_of(after, method="POST", route="/api/v1/api-keys", status="201") >= 1
    durations = {
        labels["route"]: value for labels, value in after["ledgerline_http_request_duration_seconds_count"]
    }
    assert durations[route] >= 3
    appended = (
        after["ledgerline_events_appended_total"][0][1] - before["ledgerline_events_appended_total"][0][1]
    )
    assert appended >= 1  # the key's issue (and any usage flushed meanwhile)
    projections = {labels["projection"] for labels, _ in after["ledgerline_projection_position"]}
    assert projections == {"users", "api_keys", "audit_log", "audit_checkpoints"}
    assert {labels["projection"] for labels, _ in after["ledgerline_projection_lag_events"]} == projections
    assert after["ledgerline_store_reachable"][0][1] == 1
    assert after["ledgerline_event_store_head"][0][1] >= int(created.headers["X-Event-Position"])
    assert after["ledgerline_database_breaker_open"][0][1] == 0


def test_no_label_carries_an_id_a_path_a_method_or_personal_data_a_caller_chose(api: Api) -> None:
    hostile = ["/api/v1/users/" + "7" * 40, "/api/v1/nothing/alice@example.com", "/x/<script>", "/%00"]
    for path in hostile:
        assert api.client.get(path, headers=api.as_admin()).status_code in (404, 422)
    for method in ("BREW", "PROPFIND", "X" * 50):
        assert api.client.request(method, "/api/v1/users", headers=api.as_admin()).status_code in (400, 405)
    assert api.client.get(f"/api/v1/users/{api.user_id}", headers=api.as_admin()).status_code == 200
    text = api.client.get("/metrics").text
    for secret in (
        str(api.user_id),
        str(api.admin_id),
        "alice",
        "example.com",
        api.admin_key,
        "7777",
        "<script>",
        "%3Cscript",
    ):
        assert secret not in text, secret
    methods = {labels["method"] for labels, _ in scrape(api.client)["ledgerline_http_requests_total"]}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}
    routes = {labels["route"] for labels, _ in scrape(api.client)["ledgerline_http_requests_total"]}
    known = ("/api/v1", "/health", "/live", "/ready", "/metrics", "/schema")
    assert all(route == "unmatched" or route.startswith(known) for route in routes), routes
    assert not any(re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", route) for route in routes)


def test_metrics_need_no_credential_and_a_bad_one_changes_nothing(api: Api) -> None:
    assert api.client.get("/metrics").status_code == 200
    assert api.client.get("/metrics", headers={"X-API-Key": "ll_forged"}).status_code == 200
    assert api.client.get("/api/v1/metrics").status_code == 404  # at the root only, as the contract says


def test_the_breaker_gauge_follows_the_breaker(api: Api) -> None:
    breaker = api.client.app.state["breaker"]  # type: ignore[union-attr]
    breaker.cool_down = 60  # no probe closes it during the test
    breaker.probe = lambda: False
    breaker.failed()
    try:
        assert scrape(api.client)["ledgerline_database_breaker_open"][0][1] == 1
        assert api.client.get("/api/v1/users/me", headers=api.as_user()).status_code == 503
        assert api.client.get("/metrics").status_code == 200  # served while the breaker is open
    finally:
        breaker._open.clear()
        breaker.on_change(False)
    assert scrape(api.client)["ledgerline_database_breaker_open"][0][1] == 0


@pytest.mark.parametrize("given", ["trace-42", None])
def test_every_answer_carries_a_request_id_those_of_the_router_and_a_500_too(
    api: Api, given: str | None
) -> None:
    headers = {"X-Request-ID": given} if given else {}
    answers = {
        "404": api.client.get("/no/such/route", headers=headers),
        "405": api.client.put("/health", headers=headers),
        "problem": api.client.get("/api/v1/users/me", headers=headers),  # 401 problem+json
        "ok": api.client.get("/live", headers=headers),
    }
    assert answers["404"].status_code == 404 and answers["405"].status_code == 405
    assert answers["problem"].headers["content-type"].startswith("application/problem+json")
    for name, answer in answers.items():
        request_id = answer.headers.get("X-Request-ID")
        assert request_id and answer.headers.get_list("X-Request-ID") == [request_id], name
        assert request_id == given if given else re.fullmatch(r"[0-9a-f]{32}", request_id), name


def test_a_500_carries_the_request_id(components: Components, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    app = build_app(components, watch_credentials=False)
    monkeypatch.setattr("api.controllers.health.readiness", broken)
    with TestClient(app=app, raise_server_exceptions=False) as client:
        answer = client.get("/ready", headers={"X-Request-ID": "crash-1"})
    assert answer.status_code == 500 and answer.headers["X-Request-ID"] == "crash-1"
    assert "boom" not in answer.text


def test_metrics_can_be_turned_off(components: Components) -> None:
    from dataclasses import replace

    components.settings = replace(components.settings, metrics=False)
    with TestClient(app=build_app(components, watch_credentials=False)) as client:
        assert client.get("/metrics").status_code == 404


def test_the_grafana_dashboard_asks_only_for_exported_metrics(api: Api) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert api.client.get("/live").status_code == 200  # the request metrics have a series
    text = api.client.get("/metrics").text  # families without a series yet (no sink) say # HELP
    exported = set(scrape(api.client)) | set(re.findall(r"^# HELP (ledgerline_[a-z_]+)", text, re.M))
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in exported} | exported
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 6
    for expr in exprs:
        names = set(re.findall(r"\bledgerline_[a-z_]+", expr))
        assert names, expr
        assert names <= families | exported, (expr, names - families)
    for name in CONTRACT:
        assert any(name in expr for expr in exprs), name
