"""One request, one command, one atomic append (contract v1.1, "Requests are atomic").

A PATCH refused for one field leaves every other field, and the version, as they were; every
state-changing route writes all its events in one save, whose last position is the response's
``X-Event-Position``, and answers with the state that save produced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from domain.api_keys import ApiKey
from tests.api.conftest import PASSWORD, Api
from tests.api.test_users_api import problem

USERS = "/api/v1/users"
KEYS = "/api/v1/api-keys"


@pytest.fixture
def saves(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The topics each ``Identity.save`` wrote, in order (the usage flusher's saves left out)."""
    identity = api.components.identity
    seen: list[list[str]] = []
    original = identity.save

    def spy(*aggregates: Any, **kwargs: Any) -> Any:
        recordings = original(*aggregates, **kwargs)
        topics = [type(r.domain_event).__qualname__ for r in recordings]
        if not all(t == ApiKey.UsageRecorded.__qualname__ for t in topics):
            seen.append(topics)
        return recordings

    monkeypatch.setattr(identity, "save", spy)
    yield seen


def test_a_taken_email_refuses_the_whole_patch(api: Api) -> None:
    api.components.identity.register_user(username="bob", email="bob@example.com", password=PASSWORD)
    me = f"{USERS}/{api.user_id}"
    before = api.client.get(me, headers=api.as_user()).json()["data"]

    problem(
        api.client.patch(me, json={"full_name": "X", "email": "BOB@example.com"}, headers=api.as_user()), 409
    )

    after = api.client.get(me, headers=api.as_user()).json()["data"]
    assert (after["full_name"], after["email"], after["version"]) == (
        before["full_name"],
        "alice@example.com",
        before["version"],
    )


def test_a_stale_if_match_refuses_the_whole_patch(api: Api) -> None:
    me = f"{USERS}/{api.user_id}"
    version = api.client.get(me, headers=api.as_user()).json()["data"]["version"]
    api.client.patch(me, json={"full_name": "Moved On"}, headers=api.as_user())

    stale = {**api.as_user(), "If-Match": f'"{version}"'}
    problem(api.client.patch(me, json={"full_name": "Stale", "email": "new@example.com"}, headers=stale), 412)

    after = api.client.get(me, headers=api.as_user()).json()["data"]
    assert (after["full_name"], after["email"], after["version"]) == (
        "Moved On",
        "alice@example.com",
        version + 1,
    )


def test_a_refused_privileged_field_refuses_the_whole_patch(api: Api, saves: list[list[str]]) -> None:
    me = f"{USERS}/{api.user_id}"

    problem(api.client.patch(me, json={"full_name": "X", "is_superuser": True}, headers=api.as_user()), 403)
    problem(api.client.patch(me, json={"full_name": "X", "is_active": False}, headers=api.as_user()), 403)

    user = api.components.identity.get_user(api.user_id)
    assert (user.full_name, user.is_superuser, user.version, saves) == (None, False, 1, [])


def test_name_email_and_superuser_change_in_one_append(api: Api, saves: list[list[str]]) -> None:
    path = f"{USERS}/{api.user_id}"
    body = {"full_name": "Alice Admin", "email": "alice@new.example", "is_superuser": True}

    changed = api.client.patch(path, json=body, headers={**api.as_admin(), "If-Match": '"1"'})

    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert (data["full_name"], data["email"], data["is_superuser"], data["version"]) == (
        "Alice Admin",
        "alice@new.example",
        True,
        4,
    )
    assert len(saves) == 1, saves
    assert saves[0][:3] == ["User.ProfileUpdated", "User.EmailChanged", "User.SuperuserGranted"]
    assert int(changed.headers["X-Event-Position"]) == _last_written(api)
    assert changed.headers["ETag"] == '"4"'


def test_a_patch_that_changes_nothing_writes_nothing(api: Api, saves: list[list[str]]) -> None:
    same = api.client.patch(
        f"{USERS}/me", json={"email": "ALICE@example.com", "full_name": None}, headers=api.as_user()
    )

    assert same.status_code == 200 and same.json()["data"]["version"] == 1
    assert saves in ([], [[]])


def _commands_since(api: Api, after: int) -> list[int]:
    """Positions of the events written after ``after``, the usage flusher's left out (it may
    append at any moment)."""
    stored = api.components.identity.recorder.select_notifications(after, 10_000, inclusive_of_start=False)
    return [n.id for n in stored if n.topic != ApiKey.UsageRecorded.TOPIC]


def _written(api: Api, *, after: int) -> int:
    return len(_commands_since(api, after))


def _last_written(api: Api, *, after: int = 0) -> int:
    return max(_commands_since(api, after), default=after)


def _user_command(api: Api, route: str) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
    admin, user = api.as_admin(), api.as_user()
    target = f"{USERS}/{api.user_id}"
    return {
        "register": ("POST", "/api/v1/auth/register",
                     {"username": "newbie", "email": "n@example.com", "password": PASSWORD}, {}),
        "create_user": ("POST", USERS,
                        {"username": "made", "email": "m@example.com", "password": PASSWORD}, admin),
        "update_me": ("PATCH", f"{USERS}/me", {"full_name": "A", "email": "a@new.example"}, user),
        "change_my_password": ("POST", f"{USERS}/me/change-password",
                               {"current_password": PASSWORD, "new_password": "Another-Horse-10"}, user),
        "update_user": ("PATCH", target, {"full_name": "B", "is_superuser": True}, admin),
        "verify_user": ("POST", f"{target}/verify", None, admin),
        "deactivate_user": ("POST", f"{target}/deactivate", None, admin),
        "delete_user": ("DELETE", target, None, admin),
        "erase_user": ("POST", f"{target}/erase", None, admin),
        "create_api_key": ("POST", KEYS, {"name": "new", "permissions": {"users:read": True}}, user),
    }[route]  # fmt: skip


@pytest.mark.parametrize(
    "route",
    [
        "register",
        "create_user",
        "update_me",
        "change_my_password",
        "update_user",
        "verify_user",
        "deactivate_user",
        "delete_user",
        "erase_user",
        "create_api_key",
    ],
)
def test_each_user_command_is_one_append(api: Api, saves: list[list[str]], route: str) -> None:
    method, path, body, headers = _user_command(api, route)
    head = api.components.identity.head_position()

    response = api.client.request(method, path, json=body, headers=headers)

    assert response.status_code in (200, 201), response.text
    assert len(saves) == 1, saves
    position = int(response.headers["X-Event-Position"])
    assert position == _last_written(api, after=head) and _written(api, after=head) == len(saves[0])
    assert response.headers["ETag"] == f'"{response.json()["data"]["version"]}"'


KeyCall = Callable[[Api, str], tuple[str, str, dict[str, Any] | None]]
KEY_COMMANDS: dict[str, KeyCall] = {
    "update_api_key": lambda api, key: (
        "PATCH",
        f"{KEYS}/{key}",
        {"name": "renamed", "description": "d", "permissions": {"users:read": True}, "expires_at": None},
    ),
    "rotate_api_key": lambda api, key: ("POST", f"{KEYS}/{key}/rotate", {"grace_seconds": 60}),
    "revoke_api_key": lambda api, key: ("POST", f"{KEYS}/{key}/revoke", None),
    "delete_api_key": lambda api, key: ("DELETE", f"{KEYS}/{key}", None),
}


@pytest.mark.parametrize("route", sorted(KEY_COMMANDS))
def test_each_key_command_is_one_append(api: Api, saves: list[list[str]], route: str) -> None:
    key_id = api.components.identity.issue_api_key(api.user_id, name="target", permissions={}).result.id
    saves.clear()
    method, path, body = KEY_COMMANDS[route](api, str(key_id))

    response = api.client.request(method, path, json=body, headers=api.as_user())

    assert response.status_code == 200, response.text
    assert len(saves) == 1, saves
    data = response.json()["data"]
    stored = api.components.identity.get_api_key(key_id)
    assert int(response.headers["X-Event-Position"]) == _last_written(api)
    assert (data["version"], data["name"], data["revoked_at"] is None) == (
        stored.version,
        stored.name,
        stored.revoked_at is None,
    )
    if route == "update_api_key":
        key_events = [topic for topic in saves[0] if topic.startswith("ApiKey.")]
        assert key_events == ["ApiKey.Renamed", "ApiKey.Described", "ApiKey.PermissionsChanged"]
