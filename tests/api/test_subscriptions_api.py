"""/api/v1/subscriptions: admins only, every change audited, the secret shown once and stored
nowhere, hostile URLs and bodies refused, and deliveries equal to GET /audit-logs/{position}."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text

from eventstore.database import writing
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from ledgerline.streaming import start_deliverer
from tests.api.conftest import Api
from tests.api.test_metrics import scrape
from tests.conftest import settings_for
from tests.integration.helpers import every_stored_byte
from tests.integration.stream_receiver import receiving, wait_until
from tests.integration.test_streaming import STREAM_ENV, fast

BASE = "/api/v1/subscriptions"


@pytest.fixture
def components(database_url: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Components]:
    """The ``api`` fixture's store, with loopback receivers allowed and short retries."""
    built = build(settings_for(database_url, tmp_path, **STREAM_ENV), init=True, passwords=fast_passwords)
    fast(built)
    try:
        yield built
    finally:
        built.close()


def create(api: Api, url: str, **body: Any) -> Any:
    return api.client.post(BASE, json={"url": url, **body}, headers=api.as_admin())


def test_lifecycle_each_step_audited_with_its_actor(api: Api) -> None:
    created = create(api, "http://127.0.0.1:9/hook", filter={"actions": ["user.registered"]})
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    subscription_id = data["id"]
    assert created.headers["location"].endswith(f"{BASE}/{subscription_id}")
    assert data["secret"].startswith("whsec_") and data["state"] == "active"
    assert len(base64.b64decode(data["secret"].removeprefix("whsec_"))) == 32
    assert data["filter"] == {"actions": ["user.registered"], "resource_types": None}
    assert data["delivered_through"] == data["from_position"] - 1
    one = api.client.get(f"{BASE}/{subscription_id}", headers=api.as_admin())
    assert one.status_code == 200 and "secret" not in one.json()["data"]
    assert set(one.json()["data"]) >= {"delivered_through", "lag", "last_error", "last_attempt_at", "state"}

    admin = api.as_admin()
    assert api.client.post(f"{BASE}/{subscription_id}/resume", headers=admin).status_code == 409
    paused = api.client.post(f"{BASE}/{subscription_id}/pause", headers=admin)
    assert paused.status_code == 200 and paused.json()["data"]["state"] == "paused"
    assert api.client.post(f"{BASE}/{subscription_id}/pause", headers=admin).status_code == 409
    assert api.client.post(f"{BASE}/{subscription_id}/resume", headers=admin).status_code == 200
    listed = api.client.get(BASE, headers=admin).json()
    assert [s["id"] for s in listed["data"]] == [subscription_id] and listed["pagination"]["total"] == 1
    assert api.client.delete(f"{BASE}/{subscription_id}", headers=admin).status_code == 200
    assert api.client.get(f"{BASE}/{subscription_id}", headers=admin).status_code == 404
    assert api.client.delete(f"{BASE}/{subscription_id}", headers=admin).status_code == 404
    assert api.client.get(BASE, headers=admin).json()["data"] == []

    trail = api.client.get(
        f"/api/v1/audit-logs/resource/subscription/{subscription_id}",
        params={"sort_order": "asc"},
        headers=admin,
    ).json()["data"]
    assert [e["action"] for e in trail] == [
        "subscription.created",
        "subscription.paused",
        "subscription.resumed",
        "subscription.deleted",
    ]
    assert {e["actor_id"] for e in trail} == {str(api.admin_id)}
    assert trail[0]["changes"]["secret_salt"] == "[REDACTED]"
    assert trail[0]["changes"]["url"] == "http://127.0.0.1:9/…"  # the path may carry a token


def test_the_secret_is_shown_once_and_stored_nowhere(api: Api) -> None:
    secret = create(api, "http://127.0.0.1:9/hook").json()["data"]["secret"]
    stored = every_stored_byte(api.components.engine)
    assert secret.encode() not in stored
    assert secret.removeprefix("whsec_").encode() not in stored


def test_non_admins_get_403_and_an_admins_narrow_key_too(api: Api) -> None:
    identity = api.components.identity
    reader = identity.issue_api_key(api.admin_id, name="reader", permissions={"audit_logs:read": True}).key
    for headers in (api.as_user(), {"X-API-Key": reader}):
        assert api.client.get(BASE, headers=headers).status_code == 403
        refused = api.client.post(BASE, json={"url": "http://127.0.0.1:9/x"}, headers=headers)
        assert refused.status_code == 403
    assert api.client.get(BASE).status_code == 401
    assert api.client.get(BASE, headers=api.as_admin()).json()["data"] == []  # nothing was made


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:169.254.169.254]/hook", "link-local"),
        ("http://0.0.0.0:8080/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://10.0.0.7/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://[fd00:ec2::254]/hook", "metadata"),
        ("http://metadata.invalid/hook", "does not resolve"),
        ("ftp://127.0.0.1/hook", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("http://user:pw@127.0.0.1/hook", "credentials"),
        ("http://127.0.0.1/hook#x", "fragment"),
        ("http:///hook", "host"),
        ("http://127.0.0.1:99999/hook", "valid URL"),
        ("javascript:alert(1)", "http or https"),
        ("https://\uff45xample.com/hook", "ASCII"),  # fullwidth e: the resolver would normalise it
        ("https://b\u00fccher.example/hook", "ASCII"),
    ],
)
def test_hostile_urls_are_refused_with_422(api: Api, url: str, why: str) -> None:
    refused = create(api, url)
    assert refused.status_code == 422, refused.text
    assert why in refused.text
    assert api.client.get(BASE, headers=api.as_admin()).json()["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:9/x", "filter": {"actions": ["user.exploded"]}},
        {"url": "http://127.0.0.1:9/x", "filter": {"actions": []}},
        {"url": "http://127.0.0.1:9/x", "filter": {"resource_types": ["secret"]}},
        {"url": "http://127.0.0.1:9/x", "filter": {"actions": ["user.registered"], "extra": 1}},
        {"url": "http://127.0.0.1:9/x", "secret": "whsec_mine"},
        {"url": "http://127.0.0.1:9/x", "from_position": 0},
        {"url": "http://127.0.0.1:9/x", "from_position": 2**63},
        {"url": "http://127.0.0.1:9/x", "description": "<script>"},
        {"url": "http://127.0.0.1:9/x\u0000"},
        {"url": "http://127.0.0.1:9/" + "a" * 3000},
        {"url": 7},
        {},
    ],
)
def test_hostile_bodies_are_4xx_and_store_nothing(api: Api, body: dict[str, Any]) -> None:
    refused = api.client.post(BASE, json=body, headers=api.as_admin())
    assert 400 <= refused.status_code < 500, refused.text
    assert api.client.get(BASE, headers=api.as_admin()).json()["data"] == []


def test_malformed_json_is_400(api: Api) -> None:
    refused = api.client.post(
        BASE, content=b'{"url": ', headers={**api.as_admin(), "content-type": "application/json"}
    )
    assert refused.status_code == 400


def test_deliveries_are_the_entries_as_the_api_shows_them(api: Api) -> None:
    admin = api.as_admin()
    with receiving() as receiver:
        created = create(api, receiver.url, from_position=1)
        assert created.status_code == 201
        api.client.patch(f"/api/v1/users/{api.user_id}", json={"full_name": "Alice A"}, headers=admin)
        stop = threading.Event()
        deliverer = start_deliverer(api.components, stop)  # the api fixture runs the projectors
        try:
            head = api.components.identity.head_position()
            assert wait_until(lambda: deliverer.bound >= head, 15)
            audited = api.client.get("/api/v1/audit-logs", params={"per_page": 100}, headers=admin).json()
            expected = sorted(  # key usage (this test's own requests) is traffic: not sent by default
                e["position"]
                for e in audited["data"]
                if e["action"] != "api_key.usage_recorded" and e["position"] <= head
            )
            assert wait_until(lambda: [p for p in receiver.accepted_positions() if p <= head] == expected, 15)
        finally:
            stop.set()
            deliverer.join(timeout=10)
        for request in receiver.requests:
            shown = api.client.get(f"/api/v1/audit-logs/{request.position}", headers=admin).json()["data"]
            assert request.entry == shown
        receiver.verify_all(created.json()["data"]["secret"])
        state = api.client.get(f"{BASE}/{created.json()['data']['id']}", headers=admin).json()["data"]
    assert state["delivered"] >= len(expected) and state["last_error"] is None
    assert state["delivered_through"] >= expected[-1]

    sink = {"sink": f"subscription:{UUID(state['id']).hex}"}  # /metrics: the same figures
    shown = scrape(api.client)
    assert (sink, state["delivered"]) in shown["ledgerline_stream_delivered_total"]
    assert (sink, 0) in shown["ledgerline_stream_failed_total"]
    assert any(labels == sink for labels, _ in shown["ledgerline_stream_lag_events"])
    api.client.delete(f"{BASE}/{state['id']}", headers=admin)
    gone = scrape(api.client)
    assert all(labels != sink for labels, _ in gone.get("ledgerline_stream_lag_events", []))


def test_the_list_pages_by_number_and_by_cursor(api: Api) -> None:
    admin = api.as_admin()
    made = [create(api, f"http://127.0.0.1:9/hook{n}").json()["data"]["id"] for n in range(3)]
    first = api.client.get(BASE, params={"per_page": 2}, headers=admin).json()
    assert [s["id"] for s in first["data"]] == made[:2]
    assert first["pagination"]["total"] == 3 and first["pagination"]["has_next"]
    rest = api.client.get(
        BASE, params={"per_page": 2, "cursor": first["pagination"]["next_cursor"]}, headers=admin
    ).json()
    assert [s["id"] for s in rest["data"]] == made[2:] and not rest["pagination"]["has_next"]
    second_page = api.client.get(BASE, params={"per_page": 2, "page": 2}, headers=admin).json()
    assert [s["id"] for s in second_page["data"]] == made[2:]
    newest = api.client.get(BASE, params={"sort_order": "desc", "per_page": 1}, headers=admin).json()
    assert [s["id"] for s in newest["data"]] == made[2:]
    assert api.client.get(BASE, params={"cursor": "bm90IGEgY3Vyc29y"}, headers=admin).status_code == 422


def test_a_receivers_secret_url_reaches_no_audit_reader_and_no_other_subscriber(api: Api) -> None:
    """A Slack-style URL carries its credential in the path and query: the audit entry shows the
    URL as ``scheme://host[:port]/…``; only an admin reading the subscription sees all of it."""
    admin = api.as_admin()
    token_url = "http://127.0.0.1:9/T0001/B0002/XYZsecretpath?token=abc123secret"
    with receiving() as receiver:
        first = create(api, receiver.url, from_position=1)
        assert first.status_code == 201, first.text
        second = create(api, token_url)
        assert second.status_code == 201, second.text
        stop = threading.Event()
        deliverer = start_deliverer(api.components, stop)
        second_id = second.json()["data"]["id"]

        def second_created() -> bool:
            return any(r.entry["resource_id"] == second_id for r in receiver.accepted())

        try:
            assert wait_until(second_created, 15)
        finally:
            stop.set()
            deliverer.join(timeout=10)
    audited = api.client.get("/api/v1/audit-logs", params={"per_page": 100}, headers=admin).text
    delivered = b"".join(r.body for r in receiver.requests).decode()
    for leaked in ("XYZsecretpath", "abc123secret", "T0001"):
        assert leaked not in audited
        assert leaked not in delivered
    created_entry = next(r.entry for r in receiver.requests if r.entry["resource_id"] == second_id)
    assert created_entry["changes"]["url"] == "http://127.0.0.1:9/…"
    shown = api.client.get(f"{BASE}/{second_id}", headers=admin).json()["data"]
    assert shown["url"] == token_url  # the aggregate keeps it for the admin


def test_the_creation_answer_needs_no_read_after_the_append(api: Api) -> None:
    """Once the subscription is appended its secret must be shown: the answer is built from the
    aggregate alone, so a read that fails afterwards (here the cursor table is gone) cannot turn
    it into a 500 for a subscription that exists with a secret nobody saw."""
    with writing(api.components.engine) as conn:
        conn.execute(text("DROP TABLE stream_cursors"))
    created = create(api, "http://127.0.0.1:9/hook", from_position=3)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["secret"].startswith("whsec_")
    assert data["delivered_through"] == 2 and data["delivered"] == 0 and data["last_error"] is None
    assert data["lag"] == max(0, int(created.headers["x-event-position"]) - 2)
