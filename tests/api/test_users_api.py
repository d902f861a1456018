"""/api/v1/users and /api/v1/auth through a real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from ipaddress import ip_network

from api.context import client_address
from tests.api.conftest import PASSWORD, Api

USERS = "/api/v1/users"


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    return body  # type: ignore[no-any-return]


def test_register_then_login_then_read_myself(api: Api) -> None:
    created = api.client.post(
        "/api/v1/auth/register", json={"username": "bob", "email": "Bob@Example.com", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    assert int(created.headers["X-Event-Position"]) > 0
    assert created.headers["Location"].endswith(created.json()["data"]["id"])
    user = created.json()["data"]
    assert (user["username"], user["email"], user["is_verified"], user["version"]) == (
        "bob",
        "bob@example.com",
        False,
        1,
    )

    login = api.client.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()["data"]
    assert token["token_type"] == "bearer" and token["expires_in"] == 900
    me = api.client.get(f"{USERS}/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200 and me.json()["data"]["id"] == user["id"]
    assert me.json()["data"]["last_login_at"] is not None


def test_login_failures_all_look_the_same(api: Api) -> None:
    wrong = api.client.post("/api/v1/auth/login", json={"username": "alice", "password": "Wrong-pass-1"})
    unknown = api.client.post("/api/v1/auth/login", json={"username": "nobody", "password": "Wrong-pass-1"})
    for response in (wrong, unknown):
        problem(response, 401)
        assert "WWW-Authenticate" in response.headers
    assert problem(wrong, 401)["detail"] == problem(unknown, 401)["detail"]


def test_bad_input_is_a_clear_4xx(api: Api) -> None:
    register = "/api/v1/auth/register"
    problem(
        api.client.post(register, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    problem(api.client.post(register, content=b"", headers={"content-type": "application/json"}), 400)
    weak = problem(
        api.client.post(register, json={"username": "bob", "email": "b@example.com", "password": "weak"}), 422
    )
    assert weak["errors"][0]["field"] == "password"
    extra = {"username": "bob", "email": "b@example.com", "password": PASSWORD, "role": "admin"}
    assert problem(api.client.post(register, json=extra), 422)["errors"]
    duplicate = {"username": "ALICE", "email": "new@example.com", "password": PASSWORD}
    problem(api.client.post(register, json=duplicate), 409)
    for query in ("per_page=0", "per_page=101", "page=0", "sort_by=password", "sort_order=up", "cursor=%%%"):
        problem(api.client.get(f"{USERS}?{query}", headers=api.as_admin()), 422)


def test_credentials_and_scopes(api: Api) -> None:
    problem(api.client.get(f"{USERS}/me"), 401)
    problem(api.client.get(f"{USERS}/me", headers={"X-API-Key": "llk_garbage"}), 401)
    problem(api.client.get(f"{USERS}/me", headers={"Authorization": "Bearer not.a.jwt"}), 401)
    problem(api.client.get(USERS, headers=api.as_user()), 403)  # lists need admin rights
    problem(api.client.get(f"{USERS}/{api.admin_id}", headers=api.as_user()), 404)  # not revealed
    assert api.client.get(f"{USERS}/{api.user_id}", headers=api.as_user()).status_code == 200
    assert api.client.get(f"{USERS}/{api.user_id}", headers=api.as_admin()).status_code == 200


def test_admin_creates_lists_and_pages_users(api: Api) -> None:
    for n in range(5):
        body = {
            "username": f"user{n}",
            "email": f"user{n}@example.com",
            "password": PASSWORD,
            "full_name": f"User {n}",
        }
        assert api.client.post(USERS, json=body, headers=api.as_admin()).status_code == 201
    first = api.client.get(f"{USERS}?per_page=3&sort_by=username", headers=api.as_admin())
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["pagination"]["total"] == 7 and page["pagination"]["has_next"] is True
    assert [u["username"] for u in page["data"]] == ["alice", "root", "user0"]
    following = api.client.get(
        f"{USERS}?per_page=3&sort_by=username&cursor={page['pagination']['next_cursor']}",
        headers=api.as_admin(),
    )
    assert [u["username"] for u in following.json()["data"]] == ["user1", "user2", "user3"]
    found = api.client.get(f"{USERS}?search=USER 3", headers=api.as_admin()).json()["data"]
    assert [u["username"] for u in found] == ["user3"]


def test_profile_changes_versions_and_states(api: Api) -> None:
    me = f"{USERS}/me"
    changed = api.client.patch(me, json={"full_name": "Alice A."}, headers=api.as_user())
    assert changed.status_code == 200 and changed.json()["data"]["full_name"] == "Alice A."
    version = changed.json()["data"]["version"]
    problem(
        api.client.patch(
            me, json={"full_name": "Stale"}, headers={**api.as_user(), "If-Match": str(version - 1)}
        ),
        412,
    )
    assert (
        api.client.patch(
            me, json={"full_name": "Fresh"}, headers={**api.as_user(), "If-Match": str(version)}
        ).status_code
        == 200
    )
    problem(api.client.patch(me, json={"is_superuser": True}, headers=api.as_user()), 403)
    problem(api.client.patch(me, json={"is_active": False}, headers=api.as_user()), 403)
    problem(api.client.patch(me, json={"email": "root@example.com"}, headers=api.as_user()), 409)

    verify = f"{USERS}/{api.user_id}/verify"
    assert api.client.post(verify, headers=api.as_admin()).status_code == 200
    problem(api.client.post(verify, headers=api.as_admin()), 409)
    problem(api.client.post(verify, headers=api.as_user()), 403)


def test_deactivation_stops_the_users_key_within_a_second(api: Api) -> None:
    assert api.client.get(f"{USERS}/me", headers=api.as_user()).status_code == 200  # now cached
    assert api.client.post(f"{USERS}/{api.user_id}/deactivate", headers=api.as_admin()).status_code == 200
    deadline = time.monotonic() + 1.0
    while api.client.get(f"{USERS}/me", headers=api.as_user()).status_code == 200:
        assert time.monotonic() < deadline, "the deactivated user's key still works after 1 s"
        time.sleep(0.05)
    problem(api.client.post(f"{USERS}/{api.user_id}/deactivate", headers=api.as_admin()), 409)


def test_no_secret_in_any_response(api: Api) -> None:
    responses = [
        api.client.get(f"{USERS}/me", headers=api.as_user()),
        api.client.get(USERS, headers=api.as_admin()),
        api.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}),
    ]
    for response in responses:
        assert PASSWORD not in response.text and "$argon2" not in response.text
        assert api.user_key not in response.text and api.admin_key not in response.text


def login(api: Api, username: str = "alice") -> dict:  # type: ignore[type-arg]
    response = api.client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def test_refresh_rotates_and_reuse_revokes_the_family(api: Api) -> None:
    first = login(api)
    assert first["refresh_token"].startswith("llr_")
    second = api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    pair = second.json()["data"]
    assert pair["refresh_token"] != first["refresh_token"]
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert api.client.get(f"{USERS}/me", headers=bearer).status_code == 200
    # The spent token comes back: it leaked, so the whole family ends.
    problem(api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)
    problem(api.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)
    deadline = time.monotonic() + 1.0
    while api.client.get(f"{USERS}/me", headers=bearer).status_code == 200:
        assert time.monotonic() < deadline, "an access token of a revoked session still works"
        time.sleep(0.05)
    problem(api.client.post("/api/v1/auth/refresh", json={"refresh_token": "llr_forged"}), 401)


def test_logout_ends_the_session(api: Api) -> None:
    pair = login(api)
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert api.client.post("/api/v1/auth/logout", headers=bearer).status_code == 204
    problem(api.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)
    problem(api.client.post("/api/v1/auth/logout"), 401)


def test_login_is_rate_limited_per_client(api: Api) -> None:
    statuses = [
        api.client.post("/api/v1/auth/login", json={"username": f"nobody{n}", "password": "x"}).status_code
        for n in range(12)
    ]
    assert statuses[:10] == [401] * 10
    limited = api.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    body = problem(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1 and body["title"]


def test_min_position_waits_for_the_read_side_and_for_the_future(api: Api) -> None:
    created = api.client.post(
        USERS,
        json={"username": "zed", "email": "z@example.com", "password": PASSWORD},
        headers=api.as_admin(),
    )
    position = int(created.headers["X-Event-Position"])
    listed = api.client.get(f"{USERS}?min_position={position}&search=zed", headers=api.as_admin())
    assert [u["username"] for u in listed.json()["data"]] == ["zed"]  # read-your-writes
    future = api.client.get(f"{USERS}?min_position={position + 10**6}", headers=api.as_admin())
    problem(future, 503)  # waited for (a lagging replica answers so too), then: try again later
    assert int(future.headers["Retry-After"]) >= 1
    problem(api.client.get(f"{USERS}?min_position=-1", headers=api.as_admin()), 422)
    # A position written while the request waits (by another process, say) is answered.
    root = {"Authorization": f"Bearer {login(api, 'root')['access_token']}"}  # tokens count no usage
    time.sleep(0.5)  # the keys' usage so far is flushed: the next event is amy's
    head = api.components.identity.head_position()
    later = threading.Timer(0.5, api.components.identity.register_user, kwargs={
        "username": "amy", "email": "amy@example.com", "password": PASSWORD})  # fmt: skip
    later.start()
    waited = api.client.get(f"{USERS}?min_position={head + 1}&search=amy", headers=root)
    later.join()
    assert [u["username"] for u in waited.json()["data"]] == ["amy"]


def test_lifecycle_routes(api: Api) -> None:
    admin, user = api.as_admin(), f"{USERS}/{api.user_id}"
    assert api.client.get(f"{USERS}/by-username/ALICE", headers=admin).json()["data"]["id"] == str(
        api.user_id
    )
    problem(api.client.get(f"{USERS}/by-username/nobody", headers=admin), 404)
    for _ in range(5):
        api.client.post("/api/v1/auth/login", json={"username": "alice", "password": "Wrong-pass-1"})
    assert api.client.get(user, headers=admin).json()["data"]["is_locked"] is True
    assert api.client.post(f"{user}/unlock", headers=admin).json()["data"]["is_locked"] is False
    changed = api.client.post(
        f"{USERS}/me/change-password",
        json={"current_password": PASSWORD, "new_password": "Newer-Pass-2"},
        headers=api.as_user(),
    )
    assert changed.status_code == 200
    problem(
        api.client.post(
            f"{USERS}/me/change-password",
            json={"current_password": PASSWORD, "new_password": "Newer-Pass-3"},
            headers=api.as_user(),
        ),
        422,
    )
    problem(api.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}), 401)

    assert api.client.delete(user, headers=admin).status_code == 200
    problem(api.client.get(user, headers=admin), 404)  # gone from reads...
    assert api.client.get(f"{user}?include_deleted=true", headers=admin).status_code == 200  # ...unless asked
    deadline = time.monotonic() + 1.0  # and her keys were revoked, in every process within a second
    while api.client.get(f"{USERS}/me", headers=api.as_user()).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    listed = api.client.get(f"{USERS}?search=alice", headers=admin).json()
    assert (
        listed["data"] == []
        and api.client.get(f"{USERS}?search=alice&include_deleted=true", headers=admin).json()["data"]
    )
    assert api.client.post(f"{user}/restore", headers=admin).status_code == 200
    erased = api.client.post(f"{user}/erase", headers=admin)
    assert erased.status_code == 200 and erased.json()["data"]["email"] == "[erased]"


def test_oversized_bodies_and_forwarded_addresses(api: Api) -> None:
    huge = {"username": "bob", "email": "b@example.com", "password": PASSWORD, "full_name": "x" * 100_000}
    assert api.client.post("/api/v1/auth/register", json=huge).status_code == 413

    proxies = [ip_network("10.0.0.0/8")]
    assert client_address("10.1.2.3", "203.0.113.9, 10.0.0.7", proxies) == "203.0.113.9"
    assert client_address("198.51.100.1", "203.0.113.9", proxies) == "198.51.100.1"  # untrusted peer
    assert client_address("10.1.2.3", None, proxies) == "10.1.2.3"


def test_interactive_api_documentation(api: Api) -> None:
    assert api.client.get("/schema/swagger").status_code == 200


def test_a_password_change_ends_older_sessions_and_tokens(api: Api) -> None:
    old = login(api)
    bearer = {"Authorization": f"Bearer {old['access_token']}"}
    time.sleep(1.1)  # token times have one-second resolution
    changed = api.client.post(
        f"{USERS}/me/change-password",
        json={"current_password": PASSWORD, "new_password": "Newer-Pass-2"},
        headers=bearer,
    )
    assert changed.status_code == 200
    problem(api.client.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}), 401)
    deadline = time.monotonic() + 1.0
    while api.client.get(f"{USERS}/me", headers=bearer).status_code == 200:
        assert time.monotonic() < deadline, "a token from before the password change still works"
        time.sleep(0.05)
    fresh = api.client.post("/api/v1/auth/login", json={"username": "alice", "password": "Newer-Pass-2"})
    token = fresh.json()["data"]["access_token"]
    assert api.client.get(f"{USERS}/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_review_findings_stay_fixed(api: Api) -> None:
    import base64
    import json as jsonlib

    admin = api.as_admin()
    naive = {"name": "n", "permissions": {}, "expires_at": "2099-01-01T00:00:00"}
    problem(api.client.post("/api/v1/api-keys", json=naive, headers=api.as_user()), 422)
    problem(api.client.get(f"{USERS}?created_after=2020-01-01T00:00:00", headers=admin), 422)
    odd_cursor = base64.urlsafe_b64encode(jsonlib.dumps(["x", 1]).encode()).decode()
    problem(api.client.get(f"{USERS}?cursor={odd_cursor}", headers=admin), 422)
    stale = {**api.as_user(), "If-Match": "7"}  # alice is at version 1
    problem(api.client.patch(f"{USERS}/me", json={}, headers=stale), 412)
    pair = login(api)
    out = api.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert out.status_code == 204 and int(out.headers["X-Event-Position"]) > 0
    problem(api.client.get(f"{USERS}/me", headers={"Authorization": f"Bearer {pair['access_token']}"}), 401)
    bob = api.client.post(
        USERS, json={"username": "bob", "email": "bob@example.com", "password": PASSWORD}, headers=admin
    )
    bob_id = bob.json()["data"]["id"]
    api.client.delete(f"{USERS}/{bob_id}", headers=admin)
    problem(api.client.get(f"{USERS}/by-username/bob", headers=admin), 404)


def test_a_user_as_they_were(api: Api) -> None:
    user = f"{USERS}/{api.user_id}"
    first = api.client.get(user, headers=api.as_user()).json()["data"]
    moment = first["updated_at"]
    time.sleep(0.01)
    api.client.patch(f"{USERS}/me", json={"full_name": "Later"}, headers=api.as_user())
    then = api.client.get(f"{user}?version={first['version']}", headers=api.as_user()).json()["data"]
    assert then["full_name"] is None and then["version"] == first["version"]
    at = api.client.get(f"{user}?as_of={moment.replace('Z', '%2B00:00')}", headers=api.as_user())
    assert at.status_code == 200, at.text
    assert at.json()["data"]["full_name"] is None
    assert api.client.get(user, headers=api.as_user()).json()["data"]["full_name"] == "Later"
    problem(api.client.get(f"{user}?version=999", headers=api.as_user()), 404)
    problem(api.client.get(f"{user}?as_of=2000-01-01T00:00:00Z", headers=api.as_user()), 404)
