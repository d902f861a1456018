"""Issue 14, point 6: revocation reasons, deleting revoked keys, owners' own usage statistics,
and key usage kept out of the default audit list."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import pytest

from tests.api.conftest import Api
from tests.api.test_hostile_input import commands_since
from tests.api.test_users_api import problem

KEYS = "/api/v1/api-keys"
AUDIT = "/api/v1/audit-logs"


def new_key(api: Api, owner: UUID, name: str = "k") -> tuple[UUID, str]:
    issued = api.components.identity.issue_api_key(owner, name=name, permissions={"users:read": True})
    return issued.result.id, issued.key


def revoked_entry(api: Api, key_id: UUID) -> dict[str, Any]:
    entries = api.client.get(
        AUDIT, params={"resource_id": str(key_id), "action": "api_key.revoked"}, headers=api.as_admin()
    ).json()["data"]
    assert len(entries) == 1, entries
    return entries[0]  # type: ignore[no-any-return]


def test_a_revocation_keeps_its_reason_in_the_audit_log(api: Api) -> None:
    key_id, _ = new_key(api, api.user_id)
    revoked = api.client.post(
        f"{KEYS}/{key_id}/revoke", json={"reason": "leaked in CI logs"}, headers=api.as_user()
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked_entry(api, key_id)["changes"]["reason"] == "leaked in CI logs"
    other, _ = new_key(api, api.user_id, "other")
    assert api.client.post(f"{KEYS}/{other}/revoke", headers=api.as_user()).status_code == 200  # no body
    assert revoked_entry(api, other)["changes"]["reason"] == "revoked through the API"


@pytest.mark.parametrize(
    "reason",
    ["", "x" * 201, "line\nbreak", "<script>", "\u202egpj.exe", "nul\u0000", 5, ["a"]],
)
def test_a_hostile_reason_is_refused_and_nothing_is_written(api: Api, reason: Any) -> None:
    key_id, key = new_key(api, api.user_id)
    head = api.components.identity.head_position()
    body = problem(
        api.client.post(f"{KEYS}/{key_id}/revoke", json={"reason": reason}, headers=api.as_user()), 422
    )
    assert body["errors"][0]["field"] == "reason"
    assert commands_since(api, head) == []  # key usage is flushed on its own schedule
    assert api.client.get("/api/v1/users/me", headers={"X-API-Key": key}).status_code == 200  # still live


def test_deleting_a_revoked_key_succeeds_and_writes_nothing(api: Api) -> None:
    key_id, _ = new_key(api, api.user_id)
    assert api.client.post(f"{KEYS}/{key_id}/revoke", headers=api.as_user()).status_code == 200
    version = api.components.identity.get_api_key(key_id).version
    deleted = api.client.delete(f"{KEYS}/{key_id}", headers=api.as_user())
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"]["revoked_at"] is not None and deleted.json()["data"]["is_active"] is False
    assert api.components.identity.get_api_key(key_id).version == version
    problem(api.client.post(f"{KEYS}/{key_id}/revoke", headers=api.as_user()), 409)  # revoking again: 409


def test_deleting_someone_elses_revoked_key_is_still_404(api: Api) -> None:
    bob = api.components.identity.register_user(
        username="bob", email="bob@example.com", password="Correct-Horse-9"
    )
    key_id, _ = new_key(api, bob.id)
    api.components.identity.revoke_api_key(key_id)
    problem(api.client.delete(f"{KEYS}/{key_id}", headers=api.as_user()), 404)


def stats(api: Api, headers: dict[str, str], **params: str) -> dict[str, int]:
    response = api.client.get(f"{KEYS}/usage-stats", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def test_owners_see_their_own_usage_stats_and_only_admins_see_others(api: Api) -> None:
    bob = api.components.identity.register_user(
        username="bob", email="bob@example.com", password="Correct-Horse-9"
    )
    new_key(api, bob.id, "bobs")
    mine = stats(api, api.as_user())
    assert mine["total_keys"] == 1  # alice's laptop key only
    everyone = stats(api, api.as_admin())
    assert everyone["total_keys"] == 3  # the admin's, alice's and bob's
    assert stats(api, api.as_admin(), user_id=str(bob.id))["total_keys"] == 1
    problem(
        api.client.get(f"{KEYS}/usage-stats", params={"user_id": str(bob.id)}, headers=api.as_user()), 404
    )
    no_scope = api.components.identity.issue_api_key(
        api.user_id, name="n", permissions={"users:read": True}
    ).key
    problem(api.client.get(f"{KEYS}/usage-stats", headers={"X-API-Key": no_scope}), 403)


def test_key_usage_is_out_of_the_default_audit_list_but_shown_when_asked(api: Api) -> None:
    for _ in range(3):
        assert api.client.get("/api/v1/users/me", headers=api.as_user()).status_code == 200
    deadline = time.monotonic() + 10
    asked: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not asked:  # the flusher appends the counted uses
        asked = api.client.get(
            AUDIT, params={"action": "api_key.usage_recorded"}, headers=api.as_admin()
        ).json()["data"]
        time.sleep(0.1)
    assert asked and {entry["action"] for entry in asked} == {"api_key.usage_recorded"}
    listed = api.client.get(AUDIT, params={"per_page": 100}, headers=api.as_admin()).json()
    assert listed["data"] and all(entry["action"] != "api_key.usage_recorded" for entry in listed["data"])
    assert listed["pagination"]["total"] == len(listed["data"])
    about_keys = api.client.get(
        AUDIT, params={"resource_type": "api_key", "per_page": 100}, headers=api.as_admin()
    ).json()
    assert about_keys["pagination"]["total"] == len(about_keys["data"]) > 0
    assert all(entry["action"] != "api_key.usage_recorded" for entry in about_keys["data"])
