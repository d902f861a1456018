"""GET /users/{id}/history and /api-keys/{id}/history: replayed from the event store."""

from __future__ import annotations

from tests.api.conftest import PASSWORD, Api
from tests.api.test_users_api import problem


def test_user_history_shows_each_change_with_secrets_redacted(api: Api) -> None:
    me = api.as_user()
    api.client.patch("/api/v1/users/me", json={"full_name": "Alice A."}, headers=me)
    api.client.patch("/api/v1/users/me", json={"full_name": "Alice B."}, headers=me)
    api.client.post(
        "/api/v1/users/me/change-password",
        json={"current_password": PASSWORD, "new_password": "Newer-Pass-2"},
        headers=me,
    )
    response = api.client.get(f"/api/v1/users/{api.user_id}/history", headers=me)
    assert response.status_code == 200, response.text
    entries = response.json()["data"]
    assert [e["action"] for e in entries] == [
        "user.registered",
        "user.profile_updated",
        "user.profile_updated",
        "user.password_changed",
    ]
    assert [e["version"] for e in entries] == [1, 2, 3, 4]
    assert all(isinstance(e["position"], int) for e in entries)
    assert entries[0]["changes"]["username"] == {"before": None, "after": "alice"}
    assert entries[2]["changes"]["full_name"] == {"before": "Alice A.", "after": "Alice B."}
    assert entries[3]["changes"]["password_hash"] == {"before": "[REDACTED]", "after": "[REDACTED]"}
    assert entries[1]["actor"]["id"] == str(api.user_id) and entries[1]["actor"]["type"] == "user"
    assert (
        "$argon2" not in response.text
        and PASSWORD not in response.text
        and "Newer-Pass-2" not in response.text
    )
    assert api.client.get(f"/api/v1/users/{api.user_id}/history", headers=api.as_admin()).status_code == 200
    problem(api.client.get(f"/api/v1/users/{api.admin_id}/history", headers=me), 404)


def test_api_key_history_redacts_digests(api: Api) -> None:
    created = api.client.post(
        "/api/v1/api-keys", json={"name": "ci", "permissions": {"users:read": True}}, headers=api.as_user()
    )
    key_id, key = created.json()["data"]["id"], created.json()["data"]["key"]
    rotated = api.client.post(
        f"/api/v1/api-keys/{key_id}/rotate", json={"grace_seconds": 0}, headers=api.as_user()
    )
    api.client.patch(f"/api/v1/api-keys/{key_id}", json={"name": "deploy"}, headers=api.as_user())
    response = api.client.get(f"/api/v1/api-keys/{key_id}/history", headers=api.as_user())
    assert response.status_code == 200, response.text
    entries = response.json()["data"]
    assert [e["action"] for e in entries] == ["api_key.issued", "api_key.rotated", "api_key.renamed"]
    assert entries[1]["changes"]["digest"] == {"before": "[REDACTED]", "after": "[REDACTED]"}
    assert entries[2]["changes"]["name"] == {"before": "ci", "after": "deploy"}
    assert key not in response.text and rotated.json()["data"]["key"] not in response.text
    admins = api.client.post(
        "/api/v1/api-keys", json={"name": "a", "permissions": {}}, headers=api.as_admin()
    )
    problem(
        api.client.get(f"/api/v1/api-keys/{admins.json()['data']['id']}/history", headers=api.as_user()), 404
    )


def test_history_and_past_states_match_what_the_api_answered_at_the_time(api: Api) -> None:
    """Across more changes than a snapshot interval (50): every `?version=`, every `?as_of=`
    and every history diff agrees with the GET the API answered right after that change."""
    user, admin, me = f"/api/v1/users/{api.user_id}", api.as_admin(), api.as_user()
    answered = {}  # version -> the user as GET answered right after that version was written
    answered[1] = api.client.get(user, headers=me).json()["data"]
    for n in range(64):
        if n % 16 == 5:
            api.client.post(f"{user}/deactivate", headers=admin)
            api.client.post(f"{user}/activate", headers=admin)
        elif n % 16 == 9:
            api.client.patch("/api/v1/users/me", json={"email": f"alice{n}@example.com"}, headers=me)
        else:
            api.client.patch("/api/v1/users/me", json={"full_name": f"Alice {n}"}, headers=me)
        now = api.client.get(user, headers=me).json()["data"]
        answered[now["version"]] = now
    history = api.client.get(f"{user}/history", headers=me).json()["data"]
    versions = [entry["version"] for entry in history]
    assert versions == list(range(1, versions[-1] + 1)) and versions[-1] > 64

    for version, then in answered.items():
        assert api.client.get(f"{user}?version={version}", headers=me).json()["data"] == then
        moment = then["updated_at"].replace("Z", "+00:00")
        assert api.client.get(user, params={"as_of": moment}, headers=me).json()["data"] == then
    previous = None
    for version, then in sorted(answered.items()):
        changes = history[version - 1]["changes"]
        if previous is not None:
            for field in ("full_name", "email", "is_active"):
                if then[field] != previous[field]:
                    assert changes[field] == {"before": previous[field], "after": then[field]}, version
        previous = then
