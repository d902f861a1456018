"""A credential never grants more than it holds, and keys act only within their scopes.

Contract v1.1, "Requests are atomic, credentials cannot grow": a key created or changed through a
request made with an API key may hold only scopes that key holds (and its owner may hold); more is
403. Rotating or changing a key that holds more than the caller's credential is 403 too (the
caller would get, or keep alive, a secret stronger than their own). A key needs ``users:write`` to
change its owner and ``users:read`` to read their history. An admin reaches another user's
resources only with a credential holding the route's scope; anyone else gets 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from api.authorization import ROUTES
from domain.api_keys import ApiKey
from domain.errors import ScopeNotAllowedError
from domain.scopes import Credential, check_within
from ledgerline.bootstrap import Components
from tests.api.conftest import PASSWORD, Api
from tests.api.test_users_api import problem
from tests.integration.test_concurrency import race

KEYS = "/api/v1/api-keys"
ME = "/api/v1/users/me"


def key_of(api: Api, owner_id: UUID, permissions: dict[str, bool], name: str = "k") -> dict[str, str]:
    issued = api.components.identity.issue_api_key(owner_id, name=name, permissions=permissions)
    return {"X-API-Key": issued.key}


def key_id_of(api: Api, owner_id: UUID, permissions: dict[str, bool], name: str) -> UUID:
    return api.components.identity.issue_api_key(owner_id, name=name, permissions=permissions).result.id


def token_of(api: Api, username: str) -> dict[str, str]:
    login = api.client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['data']['access_token']}"}


# ---- a key hands out only what it holds -------------------------------------------------------


@pytest.mark.parametrize(
    "requested",
    [
        {"*": True},
        {"admin": True},
        {"users:read": True},
        {"users:*": True},
        {"api_keys:write": True, "audit_logs:read": True},
    ],
)
def test_an_api_keys_write_key_cannot_create_a_stronger_key(api: Api, requested: dict[str, bool]) -> None:
    weak = key_of(api, api.admin_id, {"api_keys:write": True})  # an admin's key: the owner may hold "*"

    problem(api.client.post(KEYS, json={"name": "more", "permissions": requested}, headers=weak), 403)

    names = {k["name"] for k in api.client.get(KEYS, headers=api.as_admin()).json()["data"]}
    assert "more" not in names


def test_a_key_may_hand_out_what_it_holds_or_less(api: Api) -> None:
    holder = key_of(api, api.admin_id, {"api_keys:write": True, "users:read": True})

    same = api.client.post(
        KEYS,
        json={"name": "same", "permissions": {"api_keys:write": True, "users:read": True}},
        headers=holder,
    )
    less = api.client.post(
        KEYS, json={"name": "less", "permissions": {"users:read": True, "users:write": False}}, headers=holder
    )

    assert (same.status_code, less.status_code) == (201, 201), (same.text, less.text)


def test_a_regular_users_api_keys_write_key_cannot_mint_users_write(api: Api) -> None:
    weak = key_of(api, api.user_id, {"api_keys:write": True})

    problem(
        api.client.post(KEYS, json={"name": "w", "permissions": {"users:write": True}}, headers=weak), 403
    )


def test_an_access_token_carries_the_users_rights(api: Api) -> None:
    token = token_of(api, "alice")

    created = api.client.post(KEYS, json={"name": "w", "permissions": {"users:write": True}}, headers=token)

    assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    ("holds", "requested", "status"),
    [
        ({"users:*": True, "api_keys:write": True}, {"users:delete": True}, 201),
        ({"users:*": True, "api_keys:write": True}, {"users:*": True}, 201),
        ({"users:*": True, "api_keys:write": True}, {"*": True}, 403),
        ({"users:*": True, "api_keys:write": True}, {"admin": True}, 403),
        ({"users:*": True, "api_keys:write": True}, {"audit_logs:read": True}, 403),
        ({"users:read": True, "users:write": True, "users:delete": True, "api_keys:write": True},
         {"users:*": True}, 403),  # a wildcard also covers scopes that come later
        ({"api_keys:*": True}, {"api_keys:read": True}, 201),
        ({"api_keys:*": True}, {"users:read": True}, 403),
        ({"admin": True}, {"*": True}, 201),
        ({"*": True}, {"admin": True}, 201),
    ],
)  # fmt: skip
def test_wildcards_are_compared_scope_by_scope(
    api: Api, holds: dict[str, bool], requested: dict[str, bool], status: int
) -> None:
    holder = key_of(api, api.admin_id, holds)

    created = api.client.post(KEYS, json={"name": "w", "permissions": requested}, headers=holder)

    assert created.status_code == status, created.text


def test_a_key_cannot_patch_its_own_permissions_beyond_what_it_holds(api: Api) -> None:
    issued = api.components.identity.issue_api_key(
        api.admin_id, name="weak", permissions={"api_keys:write": True, "api_keys:read": True}
    )
    weak = {"X-API-Key": issued.key}
    path = f"{KEYS}/{issued.result.id}"

    problem(api.client.patch(path, json={"permissions": {"*": True}}, headers=weak), 403)
    problem(api.client.patch(path, json={"permissions": {"users:read": True}}, headers=weak), 403)

    stored = api.components.identity.get_api_key(issued.result.id)
    assert (stored.permissions, stored.version) == ({"api_keys:read": True, "api_keys:write": True}, 1)
    narrowed = api.client.patch(path, json={"permissions": {"api_keys:write": True}}, headers=weak)
    assert narrowed.status_code == 200 and narrowed.json()["data"]["permissions"] == {"api_keys:write": True}


def test_a_weak_key_cannot_rotate_or_change_a_stronger_key(api: Api) -> None:
    weak = key_of(api, api.user_id, {"api_keys:write": True}, name="weak")
    strong = key_id_of(api, api.user_id, {"users:write": True, "api_keys:write": True}, name="strong")
    path = f"{KEYS}/{strong}"

    problem(api.client.post(f"{path}/rotate", json={"grace_seconds": 0}, headers=weak), 403)
    problem(api.client.patch(path, json={"expires_at": None, "description": "mine now"}, headers=weak), 403)
    problem(api.client.patch(path, json={"permissions": {"api_keys:write": True}}, headers=weak), 403)

    assert api.components.identity.get_api_key(strong).version == 1  # nothing was written
    revoked = api.client.post(f"{path}/revoke", headers=weak)  # taking rights away is no escalation
    assert revoked.status_code == 200, revoked.text


def test_making_someone_an_admin_needs_a_credential_that_grants_everything(api: Api) -> None:
    """A superuser holds every scope: an admin's key with users:write alone cannot hand that out,
    neither as a new user nor by promoting one (it could then log in as them)."""
    writer = key_of(api, api.admin_id, {"users:write": True, "users:read": True}, name="writer")
    new_admin = {"username": "mallory", "email": "m@example.com", "password": PASSWORD, "is_superuser": True}

    problem(api.client.post("/api/v1/users", json=new_admin, headers=writer), 403)
    problem(
        api.client.patch(f"/api/v1/users/{api.user_id}", json={"is_superuser": True}, headers=writer), 403
    )

    assert api.components.identity.find_user_id("mallory") is None
    assert api.components.identity.get_user(api.user_id).is_superuser is False
    regular = {**new_admin, "is_superuser": False}
    assert api.client.post("/api/v1/users", json=regular, headers=writer).status_code == 201
    promoted = api.client.patch(
        f"/api/v1/users/{api.user_id}", json={"is_superuser": True}, headers=api.as_admin()
    )
    assert promoted.status_code == 200 and promoted.json()["data"]["is_superuser"] is True


def test_a_rotation_racing_a_permission_raise_never_renews_a_stronger_key(components: Components) -> None:
    """The check and the save are one version-checked append: no rotation is ever recorded on a
    key that, at that moment, held more than the rotating credential."""
    identity = components.identity
    owner = identity.register_user(username="owner", email="o@example.com", password=PASSWORD)
    target = identity.issue_api_key(owner.id, name="target", permissions={}).result.id
    weak = Credential(holder_is_superuser=False, permissions={"api_keys:write": True})

    def act(i: int) -> Any:
        if i % 2:  # the owner (a trusted caller here) widens and narrows the key
            widened = {"users:write": True} if i % 4 == 1 else {}
            return identity.update_api_key(target, permissions=widened)
        return identity.rotate_api_key(target, credential=weak)

    for _ in range(5):
        outcomes = race(act, 12)
        assert not [
            o for o in outcomes if isinstance(o, Exception) and not isinstance(o, ScopeNotAllowedError)
        ]
    permissions: dict[str, bool] = {}
    rotations = 0
    for event in identity.events.get(target):
        if isinstance(event, ApiKey.PermissionsChanged):
            permissions = dict(event.permissions)
        if isinstance(event, ApiKey.Rotated):
            rotations += 1
            check_within(weak, permissions, None)  # raises if this rotation renewed a stronger key
    assert rotations > 0


# ---- a key hands out nothing that outlives it ----------------------------------------------------


def soon() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def expiring_key(api: Api, permissions: dict[str, bool], name: str = "short") -> tuple[UUID, dict[str, str]]:
    issued = api.components.identity.issue_api_key(
        api.admin_id, name=name, permissions=permissions, expires_at=soon()
    )
    return issued.result.id, {"X-API-Key": issued.key}


@pytest.mark.parametrize("expires_in", [None, timedelta(days=30)])
def test_a_key_that_expires_soon_cannot_create_a_key_that_outlives_it(
    api: Api, expires_in: timedelta | None
) -> None:
    _, short = expiring_key(api, {"api_keys:write": True, "api_keys:read": True})
    later = None if expires_in is None else (datetime.now(UTC) + expires_in).isoformat()

    body = {"name": "forever", "permissions": {"api_keys:read": True}, "expires_at": later}
    problem(api.client.post(KEYS, json=body, headers=short), 403)

    names = {k["name"] for k in api.client.get(KEYS, headers=api.as_admin()).json()["data"]}
    assert "forever" not in names
    earlier = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    made = api.client.post(KEYS, json={**body, "name": "shorter", "expires_at": earlier}, headers=short)
    assert made.status_code == 201, made.text


def test_a_key_that_expires_soon_cannot_extend_its_own_life(api: Api) -> None:
    key_id, short = expiring_key(api, {"api_keys:write": True})
    path = f"{KEYS}/{key_id}"
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    before = api.components.identity.get_api_key(key_id)

    problem(api.client.patch(path, json={"expires_at": None}, headers=short), 403)
    problem(api.client.patch(path, json={"expires_at": later, "description": "x"}, headers=short), 403)

    after = api.components.identity.get_api_key(key_id)  # its uses may have been recorded since
    assert (after.expires_at, after.description) == (before.expires_at, before.description)
    earlier = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    assert api.client.patch(path, json={"expires_at": earlier}, headers=short).status_code == 200


def test_a_key_that_expires_soon_cannot_change_or_rotate_a_key_that_outlives_it(api: Api) -> None:
    _, short = expiring_key(api, {"api_keys:write": True})
    lasting = key_id_of(api, api.admin_id, {}, name="lasting")
    path = f"{KEYS}/{lasting}"

    problem(api.client.post(f"{path}/rotate", json={"grace_seconds": 0}, headers=short), 403)
    problem(api.client.patch(path, json={"description": "mine"}, headers=short), 403)

    assert api.components.identity.get_api_key(lasting).version == 1


def test_an_old_secret_in_its_grace_cannot_take_the_key_over(api: Api) -> None:
    issued = api.components.identity.issue_api_key(
        api.user_id,
        name="ci",
        permissions={"api_keys:write": True, "api_keys:read": True, "users:read": True},
    )
    old = {"X-API-Key": issued.key}
    path = f"{KEYS}/{issued.result.id}"
    rotated = api.client.post(f"{path}/rotate", json={"grace_seconds": 3600}, headers=api.as_user())
    assert rotated.status_code == 200, rotated.text
    new = {"X-API-Key": rotated.json()["data"]["key"]}
    assert api.client.get(ME, headers=old).status_code == 200  # the old secret still works: its grace

    problem(api.client.post(f"{path}/rotate", json={"grace_seconds": 0}, headers=old), 403)
    problem(api.client.patch(path, json={"description": "mine"}, headers=old), 403)
    problem(api.client.post(KEYS, json={"name": "escape", "permissions": {}}, headers=old), 403)

    assert api.client.get(ME, headers=new).status_code == 200  # the legitimate secret keeps the key
    changes = [  # issue, rotate; usage flushes may land in between (counted, not changes)
        type(event).__name__
        for event in api.components.identity.events.get(issued.result.id)
        if not isinstance(event, ApiKey.UsageRecorded)
    ]
    assert changes == ["Issued", "Rotated"], changes
    assert "escape" not in {k["name"] for k in api.client.get(KEYS, headers=new).json()["data"]}


def test_a_star_key_that_expires_soon_cannot_make_a_lasting_superuser(api: Api) -> None:
    """Superuser rights do not expire: handing them out needs a credential that does not either."""
    _, short = expiring_key(api, {"*": True})
    new_admin = {"username": "mallory", "email": "m@example.com", "password": PASSWORD, "is_superuser": True}

    problem(api.client.post("/api/v1/users", json=new_admin, headers=short), 403)
    problem(api.client.patch(f"/api/v1/users/{api.user_id}", json={"is_superuser": True}, headers=short), 403)

    assert api.components.identity.find_user_id("mallory") is None
    assert api.components.identity.get_user(api.user_id).is_superuser is False


# ---- whose keys: decided once --------------------------------------------------------------------


@pytest.mark.parametrize("order", ["self-first", "other-first"])
def test_user_id_given_twice_never_reaches_another_users_keys(api: Api, order: str) -> None:
    ids = [api.user_id, api.admin_id] if order == "self-first" else [api.admin_id, api.user_id]

    response = api.client.get(KEYS, params=[("user_id", str(i)) for i in ids], headers=api.as_user())

    assert response.status_code in (404, 422), response.text
    assert "admin" not in response.text
    problem(response, response.status_code)


# ---- acting on a superuser needs a credential that grants everything -----------------------------

ON_A_USER = [
    ("PATCH", "", {"is_superuser": False}, "users:write"),
    ("PATCH", "", {"email": "taken@example.com"}, "users:write"),
    ("POST", "/deactivate", None, "users:write"),
    ("POST", "/verify", None, "users:write"),
    ("POST", "/unlock", None, "users:write"),
    ("DELETE", "", None, "users:delete"),
    ("POST", "/erase", None, "users:delete"),
    ("POST", "/restore", None, "users:delete"),
]


@pytest.mark.parametrize(("method", "suffix", "body", "scope"), ON_A_USER)
def test_an_admin_key_without_everything_cannot_act_on_another_admin(
    api: Api, method: str, suffix: str, body: dict[str, Any] | None, scope: str
) -> None:
    boss = api.components.identity.register_user(
        username="boss", email="boss@example.com", password=PASSWORD, is_superuser=True
    ).id
    narrow = key_of(api, api.admin_id, {scope: True, "users:read": True}, name="narrow")
    before = api.components.identity.get_user(boss)

    problem(api.client.request(method, f"/api/v1/users/{boss}{suffix}", json=body, headers=narrow), 403)

    after = api.components.identity.get_user(boss)
    assert (after.version, after.is_superuser, after.is_active) == (before.version, True, True)
    # the same credential still acts on a regular user (it holds the route's scope)
    regular = api.client.request(method, f"/api/v1/users/{api.user_id}{suffix}", json=body, headers=narrow)
    assert regular.status_code not in (401, 403, 404), regular.text


def test_an_admin_key_with_everything_acts_on_another_admin(api: Api) -> None:
    boss = api.components.identity.register_user(
        username="boss", email="boss@example.com", password=PASSWORD, is_superuser=True
    ).id

    demoted = api.client.patch(f"/api/v1/users/{boss}", json={"is_superuser": False}, headers=api.as_admin())
    deactivated = api.client.post(f"/api/v1/users/{boss}/deactivate", headers=token_of(api, "root"))

    assert (demoted.status_code, deactivated.status_code) == (200, 200), deactivated.text


# ---- keys act only within their scopes, on their owner too ---------------------------------------


def test_a_key_without_users_write_cannot_change_its_owner(api: Api) -> None:
    reader = key_of(api, api.user_id, {"api_keys:read": True, "users:read": True})
    before = api.components.identity.get_user(api.user_id)

    problem(
        api.client.patch(ME, json={"full_name": "Hijacked", "email": "h@example.com"}, headers=reader), 403
    )
    problem(
        api.client.patch(f"/api/v1/users/{api.user_id}", json={"full_name": "Hijacked"}, headers=reader), 403
    )
    change = {"current_password": PASSWORD, "new_password": "Another-Horse-10"}
    problem(api.client.post(f"{ME}/change-password", json=change, headers=reader), 403)

    after = api.components.identity.get_user(api.user_id)
    assert after.version == before.version and after.email_address == "alice@example.com"
    login = api.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200  # the old password still works


def test_a_key_with_users_write_changes_its_owner(api: Api) -> None:
    writer = key_of(api, api.user_id, {"users:write": True})

    changed = api.client.patch(ME, json={"full_name": "Alice W."}, headers=writer)

    assert changed.status_code == 200 and changed.json()["data"]["full_name"] == "Alice W."


def test_a_key_without_users_read_cannot_read_its_owners_history(api: Api) -> None:
    writer = key_of(api, api.user_id, {"users:write": True, "api_keys:write": True})

    problem(api.client.get(f"/api/v1/users/{api.user_id}/history", headers=writer), 403)
    reader = key_of(api, api.user_id, {"users:read": True}, name="reader")
    assert api.client.get(f"/api/v1/users/{api.user_id}/history", headers=reader).status_code == 200
    assert (
        api.client.get(f"/api/v1/users/{api.user_id}/history", headers=token_of(api, "alice")).status_code
        == 200
    )


@pytest.mark.parametrize("permissions", [{}, {"api_keys:read": True}, {"users:write": True}])
def test_get_me_needs_no_scope(api: Api, permissions: dict[str, bool]) -> None:
    headers = key_of(api, api.user_id, permissions)

    me = api.client.get(ME, headers=headers)

    assert me.status_code == 200 and me.json()["data"]["id"] == str(api.user_id)


def test_a_key_without_api_keys_read_cannot_read_its_keys_history(api: Api) -> None:
    issued = api.components.identity.issue_api_key(api.user_id, name="w", permissions={"users:write": True})

    problem(api.client.get(f"{KEYS}/{issued.result.id}/history", headers={"X-API-Key": issued.key}), 403)


# ---- an admin reaches others only with the route's scope; others never -------------------------


def test_an_admin_key_without_api_keys_write_cannot_touch_another_users_key(api: Api) -> None:
    reader = key_of(api, api.admin_id, {"users:read": True}, name="reader")
    target = key_id_of(api, api.user_id, {"users:read": True}, name="target")
    path = f"{KEYS}/{target}"

    problem(api.client.post(f"{path}/revoke", headers=reader), 404)
    problem(api.client.post(f"{path}/rotate", json={}, headers=reader), 404)
    problem(api.client.patch(path, json={"description": "x"}, headers=reader), 404)
    problem(api.client.delete(path, headers=reader), 404)
    problem(api.client.get(path, headers=reader), 404)

    assert api.components.identity.get_api_key(target).version == 1


def test_an_admin_key_with_api_keys_write_manages_another_users_key(api: Api) -> None:
    manager = key_of(api, api.admin_id, {"api_keys:write": True, "api_keys:read": True, "users:read": True})
    target = key_id_of(api, api.user_id, {"users:read": True}, name="target")
    path = f"{KEYS}/{target}"

    patched = api.client.patch(path, json={"description": "checked"}, headers=manager)
    rotated = api.client.post(f"{path}/rotate", json={}, headers=manager)
    shown = api.client.get(path, headers=manager)
    revoked = api.client.post(f"{path}/revoke", headers=manager)

    assert [r.status_code for r in (patched, rotated, shown, revoked)] == [200] * 4, revoked.text


def test_a_regular_user_gets_404_for_another_users_key_and_keys_list(api: Api) -> None:
    target = key_id_of(api, api.admin_id, {}, name="target")

    for method, path, body in [
        ("GET", f"{KEYS}/{target}", None),
        ("PATCH", f"{KEYS}/{target}", {"description": "x"}),
        ("POST", f"{KEYS}/{target}/rotate", {}),
        ("POST", f"{KEYS}/{target}/revoke", None),
        ("GET", f"{KEYS}/{target}/history", None),
        ("GET", f"{KEYS}?user_id={api.admin_id}", None),
    ]:
        problem(api.client.request(method, path, json=body, headers=api.as_user()), 404)


def test_an_admin_lists_another_users_keys_only_with_api_keys_read(api: Api) -> None:
    lister = key_of(api, api.admin_id, {"api_keys:read": True}, name="lister")
    other = key_of(api, api.admin_id, {"users:read": True}, name="other")

    listed = api.client.get(f"{KEYS}?user_id={api.user_id}", headers=lister)

    assert listed.status_code == 200 and [k["name"] for k in listed.json()["data"]] == ["laptop"]
    problem(api.client.get(f"{KEYS}?user_id={api.user_id}", headers=other), 404)


def test_another_users_history_needs_an_admin_with_audit_logs_read(api: Api) -> None:
    auditor = key_of(api, api.admin_id, {"audit_logs:read": True}, name="auditor")
    reader = key_of(api, api.admin_id, {"users:read": True, "api_keys:read": True}, name="reader")
    user_history = f"/api/v1/users/{api.user_id}/history"
    key_history = f"{KEYS}/{api.components.identity.api_key_ids_of(api.user_id)[0]}/history"

    assert api.client.get(user_history, headers=auditor).status_code == 200
    assert api.client.get(key_history, headers=auditor).status_code == 200
    problem(api.client.get(user_history, headers=reader), 404)
    problem(api.client.get(key_history, headers=reader), 404)


def test_an_auditor_key_reads_its_own_history_too(api: Api) -> None:
    """audit_logs:read reads anyone's history: its own too, though it lacks users:read."""
    auditor = key_of(api, api.admin_id, {"audit_logs:read": True}, name="auditor")

    for path in [f"/api/v1/users/{api.admin_id}/history", f"/api/v1/audit-logs/user/{api.admin_id}"]:
        response = api.client.get(path, headers=auditor)
        assert response.status_code == 200, (path, response.text)


def test_every_route_about_someones_user_or_key_says_whose_it_is(api: Api) -> None:
    """By construction: a route that names a user or key decides reach in the guard, from the table."""
    for route in api.client.app.routes:
        for handler in getattr(route, "route_handlers", []):
            needs = ROUTES.get(handler.handler_name)
            if needs is None or needs.admin:
                continue
            if {"user_id", "key_id"} & set(route.path_parameters):
                assert needs.owner is not None, handler.handler_name
    for route in api.client.app.routes:  # every change to a named user shields superusers
        for handler in getattr(route, "route_handlers", []):
            needs = ROUTES.get(handler.handler_name)
            if needs and "user_id" in route.path_parameters and handler.http_methods - {"GET", "HEAD"}:
                assert needs.shields_superusers, handler.handler_name
            if needs and needs.shields_superusers:
                assert "user_id" in route.path_parameters, handler.handler_name
    assert all(needs.owner is not None for needs in ROUTES.values() if needs and needs.others)


# ---- OPTIONS answers like Litestar does, never 500, never opens a route --------------------------

OPTION_PATHS = [
    "/api/v1/users",
    "/api/v1/users/me",
    "/api/v1/users/00000000-0000-0000-0000-000000000001",
    "/api/v1/api-keys",
    "/api/v1/api-keys/00000000-0000-0000-0000-000000000001/rotate",
    "/api/v1/auth/login",
    "/api/v1/audit-logs",
]


@pytest.mark.parametrize("path", OPTION_PATHS)
@pytest.mark.parametrize(
    "headers", [{}, {"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}]
)
def test_options_answers_with_the_allowed_methods(api: Api, path: str, headers: dict[str, str]) -> None:
    response = api.client.options(path, headers=headers)

    assert response.status_code in (200, 204), response.text
    assert "OPTIONS" in response.headers["allow"]


def test_options_does_not_open_the_routes_behind_it(api: Api) -> None:
    assert api.client.options("/api/v1/users").status_code == 204
    problem(api.client.get("/api/v1/users"), 401)
    response: Any = api.client.get("/api/v1/users", headers={"X-API-Key": "llk_not-a-key"})
    assert response.status_code == 401
