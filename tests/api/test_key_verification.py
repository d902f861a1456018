"""``POST /api-keys/verify`` (contract v1.1, "Verifying a key for another service"), attacked
first: weaker callers, keys trying to grant themselves the scope, malformed keys, the lookup's
path, rotation grace, a deactivated owner, brute force."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from api.rate_limit import RateLimiter
from eventstore import key_checks
from eventstore.api_key_tokens import digest_of, generate_api_key
from tests.api.conftest import PASSWORD, Api

VERIFY = "/api/v1/api-keys/verify"
KEYS = "/api/v1/api-keys"


def issue(api: Api, owner: UUID, permissions: dict[str, bool], name: str, **extra: Any) -> tuple[UUID, str]:
    issued = api.components.identity.issue_api_key(owner, name=name, permissions=permissions, **extra)
    return issued.result.id, issued.key


def verifier(api: Api) -> dict[str, str]:
    """An admin's key holding only ``api_keys:verify``: what a receiving service is given."""
    return {"X-API-Key": issue(api, api.admin_id, {"api_keys:verify": True}, "verifier")[1]}


def verify(api: Api, key: str, headers: dict[str, str]) -> dict[str, Any]:
    response = api.client.post(VERIFY, json={"key": key}, headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# ---- who may ask ------------------------------------------------------------------------------


def test_only_an_admin_or_a_key_with_api_keys_verify_may_ask(api: Api) -> None:
    _, target = issue(api, api.user_id, {"users:read": True}, "target")
    login = api.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    user_token = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}
    admin_reader = {
        "X-API-Key": issue(api, api.admin_id, {"api_keys:read": True, "api_keys:write": True}, "r")[1]
    }
    refused = {
        "anonymous": ({}, 401),
        "a regular user's key holding every scope it may": (api.as_user(), 403),
        "a regular user's access token": (user_token, 403),
        "an admin's key without api_keys:verify": (admin_reader, 403),
    }
    for name, (headers, status) in refused.items():
        response = api.client.post(VERIFY, json={"key": target}, headers=headers)
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "VALID" not in response.text, name
    assert verify(api, target, api.as_admin())["code"] == "VALID"
    assert verify(api, target, verifier(api))["code"] == "VALID"


@pytest.mark.parametrize(
    "permissions", [{"api_keys:verify": True}, {"api_keys:*": True, "api_keys:verify": True}]
)
def test_a_regular_user_can_never_hold_api_keys_verify(api: Api, permissions: dict[str, bool]) -> None:
    created = api.client.post(KEYS, json={"name": "mine", "permissions": permissions}, headers=api.as_user())
    assert created.status_code == 403, created.text
    own = api.client.get(KEYS, headers=api.as_user()).json()["data"][0]["id"]
    patched = api.client.patch(f"{KEYS}/{own}", json={"permissions": permissions}, headers=api.as_user())
    assert patched.status_code == 403, patched.text


def test_a_regular_users_api_keys_wildcard_does_not_cover_verify(api: Api) -> None:
    _, wildcard = issue(api, api.user_id, {"api_keys:*": True}, "wild")
    response = api.client.post(VERIFY, json={"key": api.user_key}, headers={"X-API-Key": wildcard})
    assert response.status_code == 403, response.text


def test_an_admins_key_without_the_scope_cannot_grant_it_to_itself_or_a_new_key(api: Api) -> None:
    key_id, key = issue(api, api.admin_id, {"api_keys:read": True, "api_keys:write": True}, "manager")
    headers = {"X-API-Key": key}
    patched = api.client.patch(
        f"{KEYS}/{key_id}",
        json={"permissions": {"api_keys:write": True, "api_keys:verify": True}},
        headers=headers,
    )
    assert patched.status_code == 403, patched.text
    created = api.client.post(
        KEYS, json={"name": "v", "permissions": {"api_keys:verify": True}}, headers=headers
    )
    assert created.status_code == 403, created.text
    assert api.client.post(VERIFY, json={"key": key}, headers=headers).status_code == 403
    # an admin's access token (every right) may hand it out
    created = api.client.post(
        KEYS, json={"name": "v", "permissions": {"api_keys:verify": True}}, headers=api.as_admin()
    )
    assert created.status_code == 201, created.text


# ---- what it answers --------------------------------------------------------------------------


def test_a_valid_key_is_described_and_its_verification_counts_as_a_use(api: Api) -> None:
    expires = datetime.now(UTC) + timedelta(days=3)
    key_id, key = issue(
        api, api.user_id, {"users:read": True, "api_keys:read": False}, "svc", expires_at=expires
    )
    headers = verifier(api)
    answer = verify(api, key, headers)
    assert answer["valid"] is True and answer["code"] == "VALID"
    assert answer["key_id"] == str(key_id) and answer["user_id"] == str(api.user_id)
    assert answer["permissions"] == {"users:read": True}  # what it grants
    assert datetime.fromisoformat(answer["expires_at"]) == expires
    assert "null" not in str(answer) and set(answer) == {
        "valid",
        "code",
        "key_id",
        "user_id",
        "permissions",
        "expires_at",
    }
    never = verify(api, api.user_key, headers)
    assert never["expires_at"] is None  # valid and never expires: null, not absent
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the flusher appends the counted use
        if api.client.get(f"{KEYS}/{key_id}", headers=api.as_admin()).json()["data"]["usage_count"] == 1:
            return
        time.sleep(0.1)
    pytest.fail("the verification was not counted as a use of the key")


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "llk_",
        "not a key",
        "Bearer llk_x",
        "llk_" + "A" * 49,  # the right shape, a wrong checksum
        "LLK_" + "A" * 49,
        "llk_" + "é" * 49,
        "x" * 10_000,
    ],
)
def test_malformed_keys_are_not_found_without_a_lookup(
    api: Api, malformed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = verifier(api)
    verify(api, "warm-up", headers)  # the verifier's own key is now cached: no lookup of it
    looked_up: list[str] = []
    holder = type(api.components.identity)._holder
    monkeypatch.setattr(
        type(api.components.identity), "_holder", lambda self, *a: looked_up.append(a) or holder(self, *a)
    )
    assert verify(api, malformed, headers) == {"valid": False, "code": "NOT_FOUND"}
    assert [kind for kind, _ in looked_up if kind == "api_key_digest"] == []


def test_a_near_miss_of_a_real_key_is_not_found_and_told_apart_by_nothing(api: Api) -> None:
    """A real key with one character changed fails its checksum; a well-formed key that was
    never issued is NOT_FOUND with exactly the same body."""
    headers = verifier(api)
    real = api.user_key
    flipped = real[:20] + ("B" if real[20] != "B" else "C") + real[21:]
    assert verify(api, flipped, headers) == verify(api, generate_api_key().key, headers)
    assert verify(api, real.lower() if real.lower() != real else real.upper(), headers)["code"] == "NOT_FOUND"


def test_the_lookup_is_by_the_whole_keys_digest_and_compared_in_constant_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No path compares the presented secret byte by byte: an unknown key costs one lookup of
    its digest (no key is loaded); a known one is compared with ``hmac.compare_digest``."""
    headers = verifier(api)
    verify(api, "warm-up", headers)  # the verifier's own key is now cached: no lookup of it
    identity_type = type(api.components.identity)
    lookups: list[tuple[str, str]] = []
    loads: list[UUID] = []
    compared: list[tuple[str, str]] = []
    holder, get_key, compare = (
        identity_type._holder,
        identity_type.get_api_key,
        key_checks.hmac.compare_digest,
    )
    monkeypatch.setattr(
        identity_type,
        "_holder",
        lambda self, kind, value: lookups.append((kind, value)) or holder(self, kind, value),
    )
    monkeypatch.setattr(
        identity_type, "get_api_key", lambda self, key_id: loads.append(key_id) or get_key(self, key_id)
    )
    monkeypatch.setattr(
        key_checks.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or compare(a, b)
    )
    unknown = generate_api_key().key
    verify(api, unknown, headers)
    assert ("api_key_digest", digest_of(unknown)) in lookups and loads == [] and compared == []
    lookups.clear()
    verify(api, api.user_key, headers)
    assert ("api_key_digest", digest_of(api.user_key)) in lookups
    assert compared and all(isinstance(a, str) and len(a) == 64 for pair in compared for a in pair)


def test_rotation_grace_then_revocation(api: Api) -> None:
    headers = verifier(api)
    key_id, old = issue(api, api.user_id, {"users:read": True}, "rotating")
    rotated = api.client.post(f"{KEYS}/{key_id}/rotate", json={"grace_seconds": 3600}, headers=api.as_admin())
    new = rotated.json()["data"]["key"]
    grace_until = datetime.fromisoformat(rotated.json()["data"]["grace_until"])
    in_grace = verify(api, old, headers)
    assert in_grace["code"] == "VALID" and datetime.fromisoformat(in_grace["expires_at"]) == grace_until
    assert verify(api, new, headers)["code"] == "VALID"
    revoked = api.client.post(
        f"{KEYS}/{key_id}/revoke", json={"reason": "leaked in a log"}, headers=api.as_admin()
    )
    assert revoked.status_code == 200, revoked.text
    for secret in (old, new):
        assert verify(api, secret, headers) == {
            "valid": False,
            "code": "REVOKED",
            "key_id": str(key_id),
            "user_id": str(api.user_id),
        }


def test_a_rotated_out_secret_is_expired(api: Api) -> None:
    headers = verifier(api)
    key_id, old = issue(api, api.user_id, {"users:read": True}, "rotating")
    api.client.post(f"{KEYS}/{key_id}/rotate", json={"grace_seconds": 0}, headers=api.as_admin())
    assert verify(api, old, headers)["code"] == "EXPIRED"


def test_an_expired_key_is_expired(api: Api) -> None:
    _, key = issue(
        api, api.user_id, {"users:read": True}, "short", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    check = api.components.identity.check_api_key(key, now=datetime.now(UTC) + timedelta(hours=2))
    assert check.code.value == "EXPIRED" and check.permissions is None and check.expires_at is None


def test_a_deactivated_owners_key_is_owner_disabled_until_reactivated(api: Api) -> None:
    headers = verifier(api)
    key_id, key = issue(api, api.user_id, {"users:read": True}, "svc")
    assert (
        api.client.post(f"/api/v1/users/{api.user_id}/deactivate", headers=api.as_admin()).status_code == 200
    )
    assert verify(api, key, headers) == {
        "valid": False, "code": "OWNER_DISABLED", "key_id": str(key_id), "user_id": str(api.user_id)
    }  # fmt: skip
    assert api.client.post(f"/api/v1/users/{api.user_id}/activate", headers=api.as_admin()).status_code == 200
    assert verify(api, key, headers)["code"] == "VALID"


def test_verification_is_rate_limited_per_caller(api: Api) -> None:
    if not isinstance(api.client, TestClient):
        pytest.skip("the limit is counted per process")
    services = api.client.app.dependencies["services"].dependency()
    services.verify_limiter = RateLimiter(3, "key verifications")
    headers = verifier(api)
    for _ in range(3):
        verify(api, generate_api_key().key, headers)
    refused = api.client.post(VERIFY, json={"key": generate_api_key().key}, headers=headers)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "body", [{}, {"key": 5}, {"key": None}, {"key": "a\u0000b"}, {"key": "k", "extra": 1}, [1]]
)
def test_a_hostile_body_is_a_4xx(api: Api, body: Any) -> None:
    response = api.client.post(VERIFY, json=body, headers=verifier(api))
    assert 400 <= response.status_code < 500, response.text
