"""/api/v1/api-keys through a real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from uuid import UUID

from tests.api.conftest import Api
from tests.api.test_users_api import problem

KEYS = "/api/v1/api-keys"


def test_create_shows_the_key_once_and_it_works(api: Api) -> None:
    created = api.client.post(
        KEYS, json={"name": "ci", "permissions": {"users:read": True}}, headers=api.as_user()
    )
    assert created.status_code == 201, created.text
    body = created.json()["data"]
    key = body["key"]
    assert key.startswith("llk_") and body["key_prefix"] == key[:12] and body["warning"]
    assert body["is_active"] is True and body["user_id"] == str(api.user_id)
    shown = api.client.get(f"{KEYS}/{body['id']}", headers=api.as_user())
    assert shown.status_code == 200 and "key" not in shown.json()["data"] and key not in shown.text
    me = api.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["data"]["id"] == str(api.user_id)
    no_write = api.client.post(KEYS, json={"name": "x", "permissions": {}}, headers={"X-API-Key": key})
    problem(no_write, 403)  # the key holds users:read only
    listed = api.client.get(KEYS, headers=api.as_user()).json()
    assert {k["name"] for k in listed["data"]} == {"laptop", "ci"} and key not in str(listed)


def test_key_rules(api: Api) -> None:
    problem(
        api.client.post(KEYS, json={"name": "x", "permissions": {"users:fly": True}}, headers=api.as_user()),
        422,
    )
    problem(
        api.client.post(
            KEYS, json={"name": "x", "permissions": {"users:read": "yes"}}, headers=api.as_user()
        ),
        422,
    )
    problem(
        api.client.post(KEYS, json={"name": "x", "permissions": {"admin": True}}, headers=api.as_user()), 403
    )
    problem(api.client.post(KEYS, json={"name": "LAPTOP", "permissions": {}}, headers=api.as_user()), 409)
    past = {"name": "old", "permissions": {}, "expires_at": "2020-01-01T00:00:00Z"}
    assert (
        problem(api.client.post(KEYS, json=past, headers=api.as_user()), 422)["errors"][0]["field"]
        == "expires_at"
    )
    admins = api.client.post(KEYS, json={"name": "all", "permissions": {"*": True}}, headers=api.as_admin())
    assert admins.status_code == 201
    problem(
        api.client.get(f"{KEYS}/{admins.json()['data']['id']}", headers=api.as_user()), 404
    )  # not revealed


def test_revocation_is_effective_within_a_second_and_final(api: Api) -> None:
    created = api.client.post(
        KEYS, json={"name": "ci", "permissions": {"users:read": True}}, headers=api.as_user()
    )
    key_id, key = created.json()["data"]["id"], created.json()["data"]["key"]
    assert api.client.get("/api/v1/users/me", headers={"X-API-Key": key}).status_code == 200  # cached now
    revoked = api.client.post(f"{KEYS}/{key_id}/revoke", headers=api.as_user())
    assert (
        revoked.status_code == 200
        and revoked.json()["data"]["revoked_at"]
        and int(revoked.headers["X-Event-Position"])
    )
    deadline = time.monotonic() + 1.0
    while api.client.get("/api/v1/users/me", headers={"X-API-Key": key}).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key still works after 1 s"
        time.sleep(0.05)
    problem(api.client.post(f"{KEYS}/{key_id}/revoke", headers=api.as_user()), 409)
    assert api.client.delete(f"{KEYS}/{key_id}", headers=api.as_user()).status_code == 200  # already gone
    problem(api.client.post(f"{KEYS}/{key_id}/rotate", json={}, headers=api.as_user()), 409)


def test_rotation_with_grace(api: Api) -> None:
    created = api.client.post(
        KEYS, json={"name": "ci", "permissions": {"users:read": True}}, headers=api.as_user()
    )
    key_id, old = created.json()["data"]["id"], created.json()["data"]["key"]
    rotated = api.client.post(f"{KEYS}/{key_id}/rotate", json={"grace_seconds": 60}, headers=api.as_user())
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["data"]["key"]
    assert new != old and rotated.json()["data"]["id"] == key_id and rotated.json()["data"]["name"] == "ci"
    for key in (old, new):
        assert api.client.get("/api/v1/users/me", headers={"X-API-Key": key}).status_code == 200
    problem(
        api.client.post(f"{KEYS}/{key_id}/rotate", json={"grace_seconds": 604801}, headers=api.as_user()), 422
    )
    again = api.client.post(f"{KEYS}/{key_id}/rotate", json={"grace_seconds": 0}, headers=api.as_user())
    newest = again.json()["data"]["key"]
    deadline = time.monotonic() + 1.0
    while api.client.get("/api/v1/users/me", headers={"X-API-Key": new}).status_code == 200:
        assert time.monotonic() < deadline, "a key rotated without grace still works after 1 s"
        time.sleep(0.05)
    assert api.client.get("/api/v1/users/me", headers={"X-API-Key": newest}).status_code == 200


def test_patch_with_if_match(api: Api) -> None:
    created = api.client.post(
        KEYS, json={"name": "ci", "permissions": {"users:read": True}}, headers=api.as_user()
    )
    key_id, version = created.json()["data"]["id"], created.json()["data"]["version"]
    changed = api.client.patch(
        f"{KEYS}/{key_id}",
        json={"name": "deploy", "description": "CD", "permissions": {"api_keys:read": True}},
        headers={**api.as_user(), "If-Match": f'"{version}"'},
    )
    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert (data["name"], data["description"], data["permissions"]) == (
        "deploy",
        "CD",
        {"api_keys:read": True},
    )
    stale = api.client.patch(
        f"{KEYS}/{key_id}", json={"name": "x"}, headers={**api.as_user(), "If-Match": str(version)}
    )
    problem(stale, 412)


def test_usage_is_counted_exactly_and_flushed_in_batches(api: Api) -> None:
    created = api.client.post(
        KEYS, json={"name": "ci", "permissions": {"users:read": True}}, headers=api.as_user()
    )
    key_id, key = created.json()["data"]["id"], created.json()["data"]["key"]
    head = api.components.identity.head_position()
    for _ in range(50):
        assert api.client.get("/api/v1/users/me", headers={"X-API-Key": key}).status_code == 200
    deadline = time.monotonic() + 10
    while api.components.identity.get_api_key(UUID(key_id)).usage_count < 50:
        assert time.monotonic() < deadline, "usage was not flushed"
        time.sleep(0.1)
    stored = api.components.identity.get_api_key(UUID(key_id))
    assert stored.usage_count == 50 and stored.last_used_at is not None
    assert api.components.identity.head_position() - head < 10  # batched: not one event per request
    stats = api.client.get(f"{KEYS}/usage-stats", headers=api.as_admin())
    assert stats.status_code == 200, stats.text
    assert stats.json()["data"]["total_requests"] >= 50 and stats.json()["data"]["keys_used_today"] >= 1
    own = api.client.get(f"{KEYS}/usage-stats", headers=api.as_user())  # the owner's own keys
    assert own.status_code == 200 and own.json()["data"]["total_keys"] <= stats.json()["data"]["total_keys"]


def test_listing_pages_filters_and_sorts(api: Api) -> None:
    for name in ("b", "c", "a", "d"):
        api.client.post(KEYS, json={"name": name, "permissions": {}}, headers=api.as_user())
    revoked = api.client.post(KEYS, json={"name": "gone", "permissions": {}}, headers=api.as_user()).json()[
        "data"
    ]["id"]
    api.client.post(f"{KEYS}/{revoked}/revoke", headers=api.as_user())
    first = api.client.get(f"{KEYS}?sort_by=name&per_page=2", headers=api.as_user()).json()
    assert [k["name"] for k in first["data"]] == ["a", "b"] and first["pagination"]["total"] == 5
    rest = api.client.get(
        f"{KEYS}?sort_by=name&per_page=2&cursor={first['pagination']['next_cursor']}", headers=api.as_user()
    )
    assert [k["name"] for k in rest.json()["data"]] == ["c", "d"]
    everything = api.client.get(
        f"{KEYS}?include_revoked=true&sort_by=name&sort_order=desc", headers=api.as_user()
    ).json()
    assert [k["name"] for k in everything["data"]][:2] == ["laptop", "gone"]
    admin_view = api.client.get(f"{KEYS}?user_id={api.user_id}", headers=api.as_admin()).json()
    assert admin_view["pagination"]["total"] == 5
    for query in ("per_page=0", "per_page=101", "page=0", "sort_by=secret", "cursor=%%"):
        problem(api.client.get(f"{KEYS}?{query}", headers=api.as_user()), 422)
