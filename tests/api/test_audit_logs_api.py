"""/audit-logs: every filter returns exactly the matching entries, pages neither skip nor repeat,
personal data reads "[erased]" after erasure, secrets never show. SQLite and PostgreSQL.

Requests use login tokens, not API keys, so no key-usage events land while the test compares.
"""

from __future__ import annotations

import base64
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from eventstore.audit_chain.records import read_records
from eventstore.audit_chain.tree import tree_nodes
from projections.audit_log.projection import AuditLogProjection
from tests.api.conftest import PASSWORD, Api
from tests.api.test_users_api import problem

AUDIT = "/api/v1/audit-logs"
Entry = dict[str, Any]


def login(api: Api, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = api.client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['data']['access_token']}"}


def every_page(api: Api, path: str, headers: dict[str, str], **params: Any) -> list[Entry]:
    """Follow ``next_cursor`` to the end, checking that each page continues the previous one."""
    entries: list[Entry] = []
    cursor = None
    while True:
        response = api.client.get(
            path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        entries += body["data"]
        cursor = body["pagination"]["next_cursor"]
        assert body["pagination"]["has_prev"] == (len(entries) > len(body["data"]))
        if not body["pagination"]["has_next"]:
            assert cursor is None
            return entries


def positions(entries: list[Entry]) -> list[int]:
    return [entry["position"] for entry in entries]


def moment(entry: Entry) -> datetime:
    return datetime.fromisoformat(entry["occurred_at"])


@pytest.fixture
def story(api: Api) -> dict[str, Any]:
    """Alice changes her profile and adds a key; the admin creates Bob; five bad passwords lock
    Bob's account; the admin unlocks it."""
    admin, alice = login(api, "root"), login(api, "alice")
    assert (
        api.client.patch("/api/v1/users/me", json={"full_name": "Alice A."}, headers=alice).status_code == 200
    )
    created = api.client.post("/api/v1/api-keys", json={"name": "ci", "permissions": {}}, headers=alice)
    assert created.status_code == 201
    bob = api.client.post(
        "/api/v1/users",
        json={"username": "bob", "email": "bob@example.com", "password": PASSWORD},
        headers=admin,
    ).json()["data"]["id"]
    for _ in range(5):
        refused = api.client.post("/api/v1/auth/login", json={"username": "bob", "password": "Wrong-pass-1"})
        assert refused.status_code == 401
    assert api.client.post(f"/api/v1/users/{bob}/unlock", headers=admin).status_code == 200
    return {"admin": admin, "alice": alice, "bob": bob, "key": created.json()["data"]["id"]}


def test_every_entry_once_newest_first_across_pages(api: Api, story: dict[str, Any]) -> None:
    admin = story["admin"]
    everything = every_page(api, AUDIT, admin, per_page=4)
    stored = api.components.identity.recorder.select_notifications(1, 10_000)
    audited = {n.id for n in stored if n.topic in AuditLogProjection.topics}
    assert positions(everything) == sorted(audited, reverse=True)  # no gap, no repeat, newest first
    oldest_first = every_page(api, AUDIT, admin, per_page=5, sort_order="asc")
    assert positions(oldest_first) == sorted(audited)
    second_page = api.client.get(AUDIT, params={"page": 2, "per_page": 4}, headers=admin).json()
    assert positions(second_page["data"]) == positions(everything[4:8])
    assert second_page["pagination"]["total"] == len(audited)
    problem(api.client.get(AUDIT, params={"page": 1000, "per_page": 100}, headers=admin), 422)

    one = everything[3]
    assert api.client.get(f"{AUDIT}/{one['position']}", headers=admin).json()["data"] == one
    problem(api.client.get(f"{AUDIT}/{max(audited) + 1000}", headers=admin), 404)
    assert set(one) == {
        "position", "occurred_at", "action", "resource_type", "resource_id", "resource_version",
        "actor_id", "actor_type", "credential_id", "ip_address", "user_agent", "request_id",
        "correlation_id", "status", "changes", "hash",
    }  # fmt: skip
    # Every entry shows its event's leaf in the log's Merkle tree from the moment it is listed (the
    # tree grows in the append's own transaction): the stored leaf, which is the record's own.
    with api.components.engine.connect() as conn:
        leaves = {
            row.idx + 1: bytes(row.hash).hex()
            for row in conn.execute(sa.select(tree_nodes).where(tree_nodes.c.level == 0))
        }
        records = {e["position"]: read_records(conn, None, e["position"] - 1, 1)[0] for e in everything}
    for entry in everything:
        record = records[entry["position"]]
        assert record.position == entry["position"]
        assert entry["hash"] == leaves[entry["position"]] == record.leaf_hash().hex()


def test_each_filter_returns_exactly_the_matching_entries(api: Api, story: dict[str, Any]) -> None:
    admin, bob, key = story["admin"], story["bob"], story["key"]
    alice, root = str(api.user_id), str(api.admin_id)
    # Every entry's hash (its leaf in the tree) is set at commit: nothing changes between the reads below.
    everything = every_page(api, AUDIT, admin, per_page=100)

    def matching(**params: Any) -> list[Entry]:
        return every_page(api, AUDIT, admin, per_page=3, **params)

    def where(test: Any) -> list[Entry]:
        return [entry for entry in everything if test(entry)]

    # What the test did, as the auditor sees it:
    assert [e["action"] for e in matching(actor_id=alice)] == ["api_key.issued", "user.profile_updated"]
    about_bob = matching(resource_type="user", resource_id=bob)
    assert [e["action"] for e in about_bob] == [
        "user.unlocked",
        "user.locked",
        *["auth.login_failed"] * 5,
        "user.registered",
    ]
    assert [e["status"] for e in about_bob] == ["success", *["failure"] * 6, "success"]
    assert [e["changes"]["failed_login_count"] for e in about_bob[2:7]] == [5, 4, 3, 2, 1]
    assert about_bob[0]["actor_id"] == root and about_bob[-1]["actor_id"] == root
    assert all(e["actor_type"] == "anonymous" and e["actor_id"] is None for e in about_bob[1:7])
    failures = matching(status="failure")
    assert failures == about_bob[1:7]
    assert matching(action="auth.login_failed") == about_bob[2:7]
    assert [e["resource_id"] for e in matching(resource_type="api_key", resource_id=key)] == [key]

    # Every filter, alone and combined, against the whole log:
    assert matching(actor_id=root) == where(lambda e: e["actor_id"] == root)
    assert matching(resource_id=bob) == about_bob  # the id alone (no type) finds the same
    assert matching(resource_type="api_key") == where(lambda e: e["resource_type"] == "api_key")
    assert matching(action="auth.logged_in") == where(lambda e: e["action"] == "auth.logged_in")
    assert len(matching(action="auth.logged_in")) == 2  # root and alice
    assert matching(status="success") == where(lambda e: e["status"] == "success")
    assert matching(actor_id=root, resource_type="user") == where(
        lambda e: e["actor_id"] == root and e["resource_type"] == "user"
    )
    middle = everything[len(everything) // 2]["position"]
    assert matching(after_position=middle) == where(lambda e: e["position"] > middle)
    assert matching(actor_id=str(UUID(int=7))) == []

    start, end = moment(about_bob[-1]), moment(about_bob[1])  # Bob registered .. Bob locked
    window = matching(**{"from": start.isoformat(), "to": end.isoformat()})
    assert window == where(lambda e: start <= moment(e) < end)
    assert positions(window)[-1] == about_bob[-1]["position"] and about_bob[1] not in window
    late = (end + timedelta(hours=1)).isoformat()
    assert matching(**{"from": late}) == []
    assert matching(to=start.isoformat()) == where(lambda e: moment(e) < start)


def test_statistics_count_exactly(api: Api, story: dict[str, Any]) -> None:
    admin = story["admin"]
    everything = every_page(api, AUDIT, admin, per_page=100)
    response = api.client.get(f"{AUDIT}/statistics", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == statistics_of(everything)
    first_failure = min(e["position"] for e in everything if e["status"] == "failure")
    start = moment(next(e for e in everything if e["position"] == first_failure))
    end = moment(everything[0])
    windowed = api.client.get(
        f"{AUDIT}/statistics", params={"from": start.isoformat(), "to": end.isoformat()}, headers=admin
    ).json()["data"]
    assert windowed == statistics_of([e for e in everything if start <= moment(e) < end])
    assert windowed["by_status"]["failure"] == 6
    problem(
        api.client.get(
            f"{AUDIT}/statistics", params={"from": end.isoformat(), "to": start.isoformat()}, headers=admin
        ),
        422,
    )


def statistics_of(entries: list[Entry]) -> dict[str, Any]:
    actors = Counter(e["actor_id"] for e in entries if e["actor_id"] is not None)
    return {
        "total": len(entries),
        "by_action": dict(sorted(Counter(e["action"] for e in entries).items())),
        "by_resource_type": dict(sorted(Counter(e["resource_type"] for e in entries).items())),
        "by_status": dict(sorted(Counter(e["status"] for e in entries).items())),
        "top_actors": [
            {"actor_id": actor, "count": count}
            for actor, count in sorted(actors.items(), key=lambda item: (-item[1], item[0]))[:10]
        ],
    }


@pytest.mark.parametrize(
    "query",
    [
        {"actor_id": "not-a-uuid"},
        {"resource_id": "12"},
        {"status": "maybe"},
        {"resource_type": "planet"},
        {"action": "DROP TABLE"},
        {"from": "yesterday"},
        {"from": "2024-01-01T00:00:00"},  # no UTC offset
        {"from": "0001-01-01T00:00:00+05:00"},  # before year 1 in UTC
        {"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"},
        {"per_page": 0},
        {"per_page": 101},
        {"page": 0},
        {"page": 10**18},
        {"sort_order": "sideways"},
        {"after_position": -1},
        {"after_position": 2**63},
        {"cursor": base64.urlsafe_b64encode(b"not a cursor").decode()},
        {"cursor": base64.urlsafe_b64encode(b"[18446744073709551616]").decode()},  # beyond BIGINT
        {"cursor": base64.urlsafe_b64encode(b"[-1]").decode()},
    ],
)
def test_bad_input_is_a_422_problem(api: Api, query: dict[str, Any]) -> None:
    problem(api.client.get(AUDIT, params=query, headers=api.as_admin()), 422)


def test_read_only(api: Api) -> None:
    for method in ("PUT", "PATCH", "DELETE"):
        for path in (AUDIT, f"{AUDIT}/1"):
            response = api.client.request(method, path, json={}, headers=api.as_admin())
            problem(response, 405)
            assert "GET" in response.headers["allow"]


def test_a_regular_user_reads_only_what_they_did(api: Api, story: dict[str, Any]) -> None:
    alice, alice_id = story["alice"], str(api.user_id)
    mine = every_page(api, f"{AUDIT}/user/{alice_id}", alice, per_page=1)
    assert [e["action"] for e in mine] == ["api_key.issued", "user.profile_updated"]
    assert all(e["actor_id"] == alice_id for e in mine)
    assert every_page(api, f"{AUDIT}/user/{alice_id}", api.as_user()) == mine  # a key of hers too
    assert every_page(api, f"{AUDIT}/user/{alice_id}", story["admin"]) == mine
    problem(api.client.get(f"{AUDIT}/user/{api.admin_id}", headers=alice), 404)  # not revealed
    problem(api.client.get(f"{AUDIT}/user/{UUID(int=5)}", headers=story["admin"]), 404)
    for path in (AUDIT, f"{AUDIT}/1", f"{AUDIT}/statistics", f"{AUDIT}/resource/user/{alice_id}"):
        problem(api.client.get(path, headers=alice), 403)
    reader = api.components.identity.issue_api_key(
        api.admin_id, name="reader", permissions={"users:read": True}
    )
    problem(api.client.get(AUDIT, headers={"X-API-Key": reader.key}), 403)  # admin, but no audit_logs:read


def test_erasure_reaches_every_entry_and_no_secret_shows(api: Api) -> None:
    admin = login(api, "root")
    agent = {"User-Agent": "carol-browser/1.0"}
    registered = api.client.post(
        "/api/v1/auth/register",
        json={
            "username": "carol",
            "email": "carol@example.com",
            "password": PASSWORD,
            "full_name": "Carol C.",
        },
        headers=agent,
    )
    carol_id = registered.json()["data"]["id"]
    carol = {**login(api, "carol"), **agent}
    api.client.patch("/api/v1/users/me", json={"email": "carol2@example.com"}, headers=carol)
    api.client.post(
        "/api/v1/users/me/change-password",
        json={"current_password": PASSWORD, "new_password": "Newer-Pass-2"},
        headers=carol,
    )
    carol = {**login(api, "carol", "Newer-Pass-2"), **agent}  # the change ended her session
    issued = api.client.post("/api/v1/api-keys", json={"name": "k", "permissions": {}}, headers=carol)
    secret = issued.json()["data"]["key"]

    def about_carol() -> list[Entry]:
        by_her = every_page(api, AUDIT, admin, actor_id=carol_id)
        return every_page(api, AUDIT, admin, resource_id=carol_id) + [
            e for e in by_her if e["resource_id"] != carol_id
        ]

    before = about_carol()
    registered_entry = next(e for e in before if e["action"] == "user.registered")
    assert registered_entry["changes"]["email"] == "carol@example.com"
    assert registered_entry["changes"]["full_name"] == "Carol C."
    assert registered_entry["changes"]["password_hash"] == "[REDACTED]"
    assert registered_entry["user_agent"] == "carol-browser/1.0"
    assert any(e["changes"].get("email") == "carol2@example.com" for e in before)

    assert api.client.post(f"/api/v1/users/{carol_id}/erase", headers=admin).status_code == 200
    after = about_carol()
    assert after[0]["action"] == "user.erased"  # audited itself
    assert positions(after[1:]) == positions(before)  # the entries stay, their personal data goes
    hers = [e for e in before if e["actor_id"] in (carol_id, None)]  # she, or anonymous about her
    assert len(hers) >= 5 and all(e["ip_address"] and e["user_agent"] for e in hers)
    for entry in after:
        if entry["actor_id"] in (carol_id, None):
            assert (entry["ip_address"], entry["user_agent"]) == ("[erased]", "[erased]"), entry
        for field in ("email", "full_name"):
            assert entry["changes"].get(field) in (None, "[erased]"), entry
    assert next(e for e in after if e["action"] == "user.registered")["changes"]["email"] == "[erased]"

    whole_log = api.client.get(AUDIT, params={"per_page": 100}, headers=admin).text
    for forbidden in ("carol@example.com", "carol2@example.com", "Carol C.", "carol-browser"):
        assert forbidden not in whole_log
    for forbidden in ("$argon2", PASSWORD, "Newer-Pass-2", secret, '"sealed"'):
        assert forbidden not in whole_log
    assert all(
        e["changes"].get(name) in (None, "[REDACTED]")
        for e in api.client.get(AUDIT, params={"per_page": 100}, headers=admin).json()["data"]
        for name in ("password_hash", "digest", "token_digest", "refresh_digest")
    )
