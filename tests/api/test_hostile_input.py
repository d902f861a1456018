"""Hostile input at the edge, on SQLite and PostgreSQL: what a store or projection could not hold
is a 422 before any event is written, what is not JSON is a 400, and nothing is a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.api.conftest import PASSWORD, Api

REGISTER = "/api/v1/auth/register"
KEYS = "/api/v1/api-keys"
USERS = "/api/v1/users"
JSON = {"content-type": "application/json"}
NOBODY = "00000000-0000-0000-0000-000000000000"


def refused(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if status == 422:
        assert body["errors"] and all({"field", "message"} <= set(error) for error in body["errors"])
    return body


def cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode()


def user(**changes: Any) -> dict[str, Any]:
    return {"username": "mallory", "email": "mallory@example.com", "password": PASSWORD, **changes}


HOSTILE_REGISTRATIONS = [
    ("full_name", user(full_name="Mal\x00lory")),
    ("full_name", user(full_name="\ufb03" * 255)),  # "ﬃ" folds to "ffi": 765 characters folded
    ("full_name", user(full_name="javascript:alert(1)")),
    ("full_name", user(full_name="JavaScript :alert(1)")),
    ("full_name", user(full_name="data:text/html;base64,PHNjcmlwdD4=")),
    ("full_name", user(full_name="vbscript:msgbox")),
    ("full_name", user(full_name="x onmouseover=alert(1)")),
    ("full_name", user(full_name="<b>x</b>")),
    ("full_name", user(full_name="tab\there")),
    ("username", user(username="mal\x00lory")),
    ("email", user(email="mal\x00lory@example.com")),
    ("email", user(email="user..double@example.com")),
    ("email", user(email=".user@example.com")),
    ("email", user(email="user.@example.com")),
    ("password", user(password=PASSWORD + "\x00")),
]


def test_registration_refuses_what_a_store_cannot_hold(api: Api) -> None:
    head = api.components.identity.head_position()
    for field, body in HOSTILE_REGISTRATIONS:
        problem = refused(api.client.post(REGISTER, json=body))
        assert problem["errors"][0]["field"] == field, body
    assert api.components.identity.head_position() == head  # nothing was written


def test_an_unpaired_surrogate_is_refused(api: Api) -> None:
    body = json.dumps(user()).replace('"mallory"', '"mal\\ud800lory"').encode()
    head = api.components.identity.head_position()

    refused(api.client.post(REGISTER, content=body, headers=JSON))

    assert commands_since(api, head) == []


def commands_since(api: Api, head: int) -> list[str]:
    """The topics written after ``head``, leaving out key usage (flushed on its own schedule)."""
    written = api.components.identity.recorder.select_notifications(head, 1000, inclusive_of_start=False)
    return [n.topic for n in written if not n.topic.endswith(".UsageRecorded")]


def test_a_correlation_or_request_id_that_is_not_an_identifier_is_replaced(api: Api) -> None:
    for n, hostile in enumerate(("a\x00b", "x" * 129, "ok\n", "<script>")):
        headers = {**api.as_user(), "X-Correlation-ID": hostile, "X-Request-ID": hostile}
        try:
            response = api.client.patch(f"{USERS}/me", json={"full_name": f"Alice {n}"}, headers=headers)
        except httpx.LocalProtocolError:  # over real HTTP (two processes) h11 will not send a NUL
            continue
        assert response.status_code == 200, response.text
        request_id = response.headers["X-Request-ID"]
        assert request_id != hostile
        (event,) = api.components.identity.events.get(api.user_id, gt=response.json()["data"]["version"] - 1)
        audit = event.audit  # type: ignore[attr-defined]
        assert (audit.request_id, audit.correlation_id) == (request_id, request_id)
    listed = api.client.get("/api/v1/audit-logs", params={"resource_id": str(api.user_id)},
                            headers=api.as_admin())  # fmt: skip
    assert listed.status_code == 200, listed.text  # the read side took every entry


def test_a_name_of_255_characters_that_stays_255_when_folded_is_accepted(api: Api) -> None:
    created = api.client.post(REGISTER, json=user(full_name="Zoë " + "ä" * 251))

    assert created.status_code == 201, created.text
    listed = api.client.get(USERS, params={"search": "zoë"}, headers=api.as_admin())
    assert [found["username"] for found in listed.json()["data"]] == ["mallory"]  # projected


HOSTILE_KEY_CHANGES = [
    ("expires_at", {"expires_at": "9999-12-31T23:59:59-14:00"}),  # overflows in UTC
    ("description", {"description": "a\x00b"}),
    ("name", {"name": "a\x00b"}),
    ("name", {"name": "a\x7f"}),  # display text: the rule of full_name too
    ("name", {"name": "report\u202egpj.exe"}),  # shown as "reportexe.jpg"
    ("description", {"description": "a\x1b[31mred"}),
    ("description", {"description": "\ufeffhidden"}),
    ("permissions", {"permissions": {"users:read": 1}}),  # not coerced to true
    ("permissions", {"permissions": {"users:read": "true"}}),
]


@pytest.mark.parametrize("full_name", ["Alice\u202eecilA", "\ufeffAlice", "Alice\u2066x", "Alice\x9b"])
def test_a_full_name_with_bidi_controls_or_a_byte_order_mark_is_refused(api: Api, full_name: str) -> None:
    head = api.components.identity.head_position()
    assert (
        refused(api.client.post(REGISTER, json=user(full_name=full_name)))["errors"][0]["field"]
        == "full_name"
    )
    assert commands_since(api, head) == []


def test_keys_refuse_what_a_store_cannot_hold(api: Api) -> None:
    key = api.client.post(KEYS, json={"name": "ci", "permissions": {}}, headers=api.as_user()).json()["data"]
    head = api.components.identity.head_position()
    for field, changes in HOSTILE_KEY_CHANGES:
        body = {"name": "ci2", "permissions": {"users:read": True}, **changes}
        assert refused(api.client.post(KEYS, json=body, headers=api.as_user()))["errors"][0]["field"] == field
        patched = api.client.patch(f"{KEYS}/{key['id']}", json=changes, headers=api.as_user())
        assert refused(patched)["errors"][0]["field"] == field, changes
    assert commands_since(api, head) == []


def test_a_rotation_grace_given_as_text_is_refused(api: Api) -> None:
    key = api.client.post(KEYS, json={"name": "ci", "permissions": {}}, headers=api.as_user()).json()["data"]

    refused(api.client.post(f"{KEYS}/{key['id']}/rotate", json={"grace_seconds": "5"}, headers=api.as_user()))


def test_login_refuses_nul(api: Api) -> None:
    for body in ({"username": "alice\x00", "password": PASSWORD}, {"username": "alice", "password": "x\x00"}):
        refused(api.client.post("/api/v1/auth/login", json=body))


def test_a_profile_change_refuses_what_the_users_view_cannot_hold(api: Api) -> None:
    head = api.components.identity.head_position()
    for body in ({"full_name": "\ufb03" * 255}, {"full_name": "a\x00"}, {"email": "a..b@example.com"}):
        refused(api.client.patch(f"{USERS}/me", json=body, headers=api.as_user()))
    assert commands_since(api, head) == []


NOT_JSON = [
    (b"[" * 10_000, 400),  # deeper than the decoder recurses
    (b'{"username": "\xff"}', 400),  # not UTF-8
    (b"\xff\xfe", 400),
    (b'{"username": ' + b"[" * 10_000, 400),
    (b"{not json", 400),
    (b'{"username": NaN}', 400),
]


def test_a_body_that_is_not_json_is_a_4xx(api: Api) -> None:
    for body, status in NOT_JSON:
        refused(api.client.post(REGISTER, content=body, headers=JSON), status)


def test_if_match_that_is_not_a_version_is_refused(api: Api) -> None:
    for value in (b"\xb2", "²".encode(), b"9" * 5000, b"-1", b"1.0", b'"3', b"W/", b""):
        response = api.client.patch(
            f"{USERS}/me", json={"full_name": "A"}, headers={**api.as_user(), "If-Match": value}
        )
        assert refused(response)["errors"][0]["field"] == "If-Match", value


def test_if_match_accepts_the_forms_of_a_version(api: Api) -> None:
    version = api.client.get(f"{USERS}/me", headers=api.as_user()).json()["data"]["version"]
    for value in (str(version), f'"{version + 1}"', f'W/"{version + 2}"'):
        response = api.client.patch(
            f"{USERS}/me", json={"full_name": value}, headers={**api.as_user(), "If-Match": value}
        )
        assert response.status_code == 200, response.text


HOSTILE_QUERIES = [
    (USERS, {"cursor": cursor("2020-01-01T00:00:00", NOBODY)}),  # naive
    (USERS, {"cursor": cursor("0001-01-01T00:00:00+05:00", NOBODY)}),  # before year 1 in UTC
    (USERS, {"cursor": cursor("9999-12-31T23:59:59-14:00", NOBODY)}),  # after 9999 in UTC
    (USERS, {"sort_by": "last_login_at", "cursor": cursor("2020-01-01T00:00:00", NOBODY)}),
    (USERS, {"sort_by": "username", "cursor": cursor("a\x00", NOBODY)}),
    (USERS, {"sort_by": "email", "cursor": cursor("a\ud800", NOBODY)}),
    (USERS, {"cursor": cursor(1, NOBODY)}),
    (USERS, {"cursor": base64.urlsafe_b64encode(b"[" * 380).decode()}),
    (USERS, {"search": "a\x00"}),
    (KEYS, {"cursor": cursor("2020-01-01T00:00:00", NOBODY)}),
    (KEYS, {"sort_by": "name", "cursor": cursor("\x00", NOBODY)}),
    ("/api/v1/audit-logs", {"cursor": cursor(10**40)}),
    ("/api/v1/audit-logs", {"cursor": base64.urlsafe_b64encode(b"[" * 380).decode()}),
    ("/api/v1/audit-logs", {"action": "user.\x00"}),
    ("/api/v1/audit-logs", {"from": "0001-01-01T00:00:00+05:00"}),
    ("/api/v1/audit-logs", {"to": "2020-01-01T00:00:00"}),
    ("/api/v1/audit-logs/statistics", {"from": "9999-12-31T23:59:59-14:00"}),
    (USERS, {"created_after": "9999-12-31T23:59:59-14:00"}),
]


def test_query_values_a_column_cannot_hold_are_refused(api: Api) -> None:
    for path, params in HOSTILE_QUERIES:
        assert refused(api.client.get(path, params=params, headers=api.as_admin()))["errors"], params


def test_nothing_refused_stalled_the_read_side(api: Api) -> None:
    for body in (user(full_name="\ufb03" * 255), user(full_name="a\x00")):
        refused(api.client.post(REGISTER, json=body))
    expiring = {"name": "k", "permissions": {}, "expires_at": "9999-12-30T00:00:00-14:00"}
    assert api.client.post(KEYS, json=expiring, headers=api.as_user()).status_code == 201  # fits in UTC

    listed = api.client.get(KEYS, headers=api.as_user())

    assert listed.status_code == 200, listed.text
    assert [key["expires_at"] for key in listed.json()["data"] if key["name"] == "k"] == [
        "9999-12-30T14:00:00Z"
    ]


def test_options_lists_every_method_of_the_path(api: Api) -> None:
    for path, methods in ((KEYS, {"GET", "POST"}), (f"{USERS}/me", {"GET", "PATCH"})):
        response = api.client.options(path, headers=api.as_user())
        assert response.status_code in (200, 204), response.text
        assert methods | {"OPTIONS"} <= {method.strip() for method in response.headers["allow"].split(",")}
