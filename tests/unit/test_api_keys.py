"""The ApiKey aggregate: issue, authenticate, rotate with grace, change, revoke, usage."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.api_keys import MAX_GRACE_SECONDS, ApiKey
from domain.errors import (
    ApiKeyExpiredError,
    ApiKeyRevokedError,
    InvalidValueError,
    ScopeNotAllowedError,
    UnknownScopeError,
)
from domain.scopes import ADMIN_ONLY


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


DIGEST = sha256("llk_first")
NEW_DIGEST = sha256("llk_second")
OTHER_DIGEST = sha256("llk_other")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def owner_id() -> UUID:
    return uuid4()


def issue(now: datetime, **overrides: Any) -> ApiKey:
    fields: dict[str, Any] = {
        "key_id": uuid4(),
        "owner_id": uuid4(),
        "owner_is_superuser": False,
        "name": "ci",
        "description": None,
        "key_prefix": "llk_abcdefgh",
        "digest": DIGEST,
        "permissions": {"users:read": True},
        "expires_at": None,
        "now": now,
    }
    fields.update(overrides)
    return ApiKey.issue(**fields)


def fresh_key(now: datetime, **overrides: Any) -> ApiKey:
    key = issue(now, **overrides)
    key.collect_events()
    return key


def new_event_types(key: ApiKey) -> list[type]:
    return [type(event) for event in key.collect_events()]


# ---- issue ------------------------------------------------------------------------------------


def test_issue_records_the_key(now: datetime, owner_id: UUID) -> None:
    key_id = uuid4()
    expires_at = now + timedelta(days=30)

    key = issue(
        now,
        key_id=key_id,
        owner_id=owner_id,
        name="deploy",
        description="CI deploys",
        permissions={"users:write": True, "api_keys:read": True, "users:read": False},
        expires_at=expires_at,
    )

    assert key.id == key_id
    assert key.owner_id == owner_id
    assert key.data_subject_id == owner_id
    assert key.name == "deploy"
    assert key.description == "CI deploys"
    assert key.key_prefix == "llk_abcdefgh"
    assert key.digest == DIGEST
    assert key.permissions == {"api_keys:read": True, "users:read": False, "users:write": True}
    assert key.expires_at == expires_at
    assert key.usage_count == 0
    assert key.is_revoked is False
    assert key.is_active(now) is True
    assert key.version == 1
    assert new_event_types(key) == [ApiKey.Issued]


@pytest.mark.parametrize("before", [timedelta(0), timedelta(seconds=1), timedelta(days=1)])
def test_issue_refuses_an_expiry_that_is_not_in_the_future(now: datetime, before: timedelta) -> None:
    with pytest.raises(InvalidValueError) as raised:
        issue(now, expires_at=now - before)

    assert raised.value.field == "expires_at"


@pytest.mark.parametrize("scope", ["users:admin", "USERS:READ", "users", "", "keys:read", "users:read "])
def test_issue_refuses_an_unknown_scope(now: datetime, scope: str) -> None:
    with pytest.raises(UnknownScopeError) as raised:
        issue(now, permissions={"users:read": True, scope: True})

    assert raised.value.scope == scope
    assert raised.value.field == "permissions"


@pytest.mark.parametrize("value", [1, 0, "true", None, "yes", 1.0])
def test_issue_refuses_a_non_boolean_permission_value(now: datetime, value: object) -> None:
    with pytest.raises(InvalidValueError) as raised:
        issue(now, permissions={"users:read": value})

    assert raised.value.field == "permissions"


@pytest.mark.parametrize("scope", sorted(ADMIN_ONLY))
def test_issue_refuses_an_admin_only_scope_for_a_regular_owner(now: datetime, scope: str) -> None:
    with pytest.raises(ScopeNotAllowedError) as raised:
        issue(now, owner_is_superuser=False, permissions={"users:read": True, scope: True})

    assert raised.value.scope == scope


@pytest.mark.parametrize("scope", sorted(ADMIN_ONLY))
def test_issue_allows_an_admin_only_scope_for_a_superuser_owner(now: datetime, scope: str) -> None:
    key = issue(now, owner_is_superuser=True, permissions={scope: True})

    assert key.permissions == {scope: True}


# ---- accepts ----------------------------------------------------------------------------------


def test_accepts_the_current_digest(now: datetime) -> None:
    key = fresh_key(now)

    assert key.accepts(DIGEST, now) is True


@pytest.mark.parametrize("digest", [OTHER_DIGEST, "", DIGEST.upper(), DIGEST[:-1]])
def test_refuses_a_wrong_digest(now: datetime, digest: str) -> None:
    key = fresh_key(now)

    assert key.accepts(digest, now) is False


def test_refuses_the_right_digest_once_expired(now: datetime) -> None:
    expires_at = now + timedelta(hours=1)
    key = fresh_key(now, expires_at=expires_at)

    assert key.accepts(DIGEST, expires_at - timedelta(microseconds=1)) is True
    assert key.accepts(DIGEST, expires_at) is False
    assert key.accepts(DIGEST, expires_at + timedelta(days=1)) is False
    assert key.is_expired(expires_at) is True
    assert key.is_active(expires_at) is False


def test_refuses_the_right_digest_once_revoked(now: datetime) -> None:
    key = fresh_key(now)

    key.revoke("leaked")

    assert key.accepts(DIGEST, now) is False
    assert key.is_active(now) is False


# ---- rotate -----------------------------------------------------------------------------------


def rotate(key: ApiKey, now: datetime, grace_seconds: int, digest: str = NEW_DIGEST) -> None:
    key.rotate(key_prefix="llk_newprefx", digest=digest, grace_seconds=grace_seconds, now=now)


def test_rotate_accepts_the_old_digest_until_grace_until(now: datetime) -> None:
    key = fresh_key(now)

    rotate(key, now, grace_seconds=3600)

    grace_until = now + timedelta(seconds=3600)
    assert key.grace_until == grace_until
    assert key.key_prefix == "llk_newprefx"
    assert key.digest == NEW_DIGEST
    assert key.previous_digest == DIGEST
    assert key.accepts(NEW_DIGEST, now) is True
    assert key.accepts(DIGEST, now) is True
    assert key.accepts(DIGEST, grace_until - timedelta(microseconds=1)) is True
    assert key.accepts(DIGEST, grace_until) is False
    assert key.accepts(DIGEST, grace_until + timedelta(hours=1)) is False
    assert key.accepts(NEW_DIGEST, grace_until + timedelta(hours=1)) is True
    assert key.accepts(OTHER_DIGEST, now) is False
    events = key.collect_events()
    assert [type(event) for event in events] == [ApiKey.Rotated]
    assert key.rotated_at == events[0].timestamp


def test_rotate_with_no_grace_refuses_the_old_digest_at_once(now: datetime) -> None:
    key = fresh_key(now)

    rotate(key, now, grace_seconds=0)

    assert key.grace_until is None
    assert key.previous_digest is None
    assert key.accepts(DIGEST, now) is False
    assert key.accepts(NEW_DIGEST, now) is True


def test_a_second_rotation_drops_the_first_digest(now: datetime) -> None:
    key = fresh_key(now)
    rotate(key, now, grace_seconds=3600)

    rotate(key, now, grace_seconds=3600, digest=OTHER_DIGEST)

    assert key.accepts(DIGEST, now) is False
    assert key.accepts(NEW_DIGEST, now) is True
    assert key.accepts(OTHER_DIGEST, now) is True


def test_a_revoked_key_accepts_no_digest_even_in_grace(now: datetime) -> None:
    key = fresh_key(now)
    rotate(key, now, grace_seconds=3600)

    key.revoke()

    assert key.accepts(DIGEST, now) is False
    assert key.accepts(NEW_DIGEST, now) is False


@pytest.mark.parametrize("grace_seconds", [-1, -3600, MAX_GRACE_SECONDS + 1, 10**9])
def test_rotate_refuses_a_grace_out_of_range(now: datetime, grace_seconds: int) -> None:
    key = fresh_key(now)

    with pytest.raises(InvalidValueError) as raised:
        rotate(key, now, grace_seconds=grace_seconds)

    assert raised.value.field == "grace_seconds"
    assert key.digest == DIGEST
    assert key.collect_events() == []


def test_rotate_allows_the_longest_grace(now: datetime) -> None:
    assert MAX_GRACE_SECONDS == 604800
    key = fresh_key(now)

    rotate(key, now, grace_seconds=MAX_GRACE_SECONDS)

    assert key.grace_until == now + timedelta(days=7)


def test_rotating_an_expired_key_is_refused(now: datetime) -> None:
    key = fresh_key(now, expires_at=now + timedelta(minutes=1))

    with pytest.raises(ApiKeyExpiredError):
        rotate(key, now + timedelta(minutes=1), grace_seconds=0)


# ---- changes ----------------------------------------------------------------------------------


def test_rename_describe_change_permissions_and_expiry(now: datetime) -> None:
    key = fresh_key(now)
    expires_at = now + timedelta(days=1)

    key.rename("deploy", now)
    key.describe("for deploys", now)
    key.change_permissions({"api_keys:write": True}, owner_is_superuser=False, now=now)
    key.change_expiry(expires_at, now)

    assert key.name == "deploy"
    assert key.description == "for deploys"
    assert key.permissions == {"api_keys:write": True}
    assert key.expires_at == expires_at
    assert new_event_types(key) == [
        ApiKey.Renamed,
        ApiKey.Described,
        ApiKey.PermissionsChanged,
        ApiKey.ExpiryChanged,
    ]


def test_change_expiry_can_remove_the_expiry(now: datetime) -> None:
    key = fresh_key(now, expires_at=now + timedelta(days=1))

    key.change_expiry(None, now)

    assert key.expires_at is None
    assert new_event_types(key) == [ApiKey.ExpiryChanged]


def test_change_expiry_refuses_a_past_expiry(now: datetime) -> None:
    key = fresh_key(now)

    with pytest.raises(InvalidValueError):
        key.change_expiry(now - timedelta(seconds=1), now)

    assert key.expires_at is None


def test_change_permissions_checks_the_scopes(now: datetime) -> None:
    key = fresh_key(now)

    with pytest.raises(ScopeNotAllowedError):
        key.change_permissions({"admin": True}, owner_is_superuser=False, now=now)
    with pytest.raises(UnknownScopeError):
        key.change_permissions({"nope:read": True}, owner_is_superuser=False, now=now)

    assert key.permissions == {"users:read": True}
    assert key.collect_events() == []


def test_changes_that_change_nothing_trigger_no_event(now: datetime) -> None:
    expires_at = now + timedelta(days=1)
    key = fresh_key(
        now,
        name="ci",
        description="desc",
        permissions={"users:read": True, "api_keys:read": False},
        expires_at=expires_at,
    )

    key.rename("ci", now)
    key.describe("desc", now)
    key.change_permissions({"api_keys:read": False, "users:read": True}, owner_is_superuser=False, now=now)
    key.change_expiry(expires_at, now)

    assert key.collect_events() == []
    assert key.version == 1


KEY_CHANGES: dict[str, Callable[[ApiKey, datetime], None]] = {
    "rename": lambda key, now: key.rename("other", now),
    "describe": lambda key, now: key.describe("other", now),
    "change_permissions": lambda key, now: key.change_permissions(
        {"api_keys:read": True}, owner_is_superuser=False, now=now
    ),
    "change_expiry": lambda key, now: key.change_expiry(now + timedelta(days=2), now),
    "rotate": lambda key, now: rotate(key, now, grace_seconds=60),
    "revoke": lambda key, now: key.revoke(),
}


@pytest.mark.parametrize("change", KEY_CHANGES.values(), ids=KEY_CHANGES.keys())
def test_any_change_on_a_revoked_key_is_refused(
    now: datetime, change: Callable[[ApiKey, datetime], None]
) -> None:
    key = fresh_key(now)
    key.revoke()
    key.collect_events()

    with pytest.raises(ApiKeyRevokedError) as raised:
        change(key, now)

    assert raised.value.resource_id == key.id
    assert key.collect_events() == []


def test_revoke_records_the_reason(now: datetime) -> None:
    key = fresh_key(now)

    key.revoke("leaked in a log")

    events = key.collect_events()
    assert [type(event) for event in events] == [ApiKey.Revoked]
    assert key.is_revoked is True
    assert key.revoked_at == events[0].timestamp
    assert key.revocation_reason == "leaked in a log"


@pytest.mark.parametrize("change", ["rename", "describe", "change_permissions"])
def test_changes_on_an_expired_key_are_refused(now: datetime, change: str) -> None:
    key = fresh_key(now, expires_at=now + timedelta(minutes=1))

    with pytest.raises(ApiKeyExpiredError):
        KEY_CHANGES[change](key, now + timedelta(minutes=2))


# ---- usage ------------------------------------------------------------------------------------


def test_record_usage_sums_counts_and_keeps_the_latest_use(now: datetime, owner_id: UUID) -> None:
    key = fresh_key(now, owner_id=owner_id)
    first, latest = now + timedelta(minutes=1), now + timedelta(minutes=5)

    key.record_usage(count=3, last_used_at=first, last_used_ip="198.51.100.1")
    key.record_usage(count=4, last_used_at=latest, last_used_ip="198.51.100.2")
    key.record_usage(count=2, last_used_at=now + timedelta(minutes=2), last_used_ip="198.51.100.3")

    assert key.usage_count == 9
    assert key.last_used_at == latest
    assert key.last_used_ip is not None
    assert key.last_used_ip.value == "198.51.100.2"
    assert key.last_used_ip.subject_id == owner_id
    assert new_event_types(key) == [ApiKey.UsageRecorded] * 3


def test_record_usage_without_an_ip(now: datetime) -> None:
    key = fresh_key(now)

    key.record_usage(count=1, last_used_at=now, last_used_ip=None)

    assert key.usage_count == 1
    assert key.last_used_at == now
    assert key.last_used_ip is None


@pytest.mark.parametrize("count", [0, -1])
def test_record_usage_refuses_a_count_below_one(now: datetime, count: int) -> None:
    key = fresh_key(now)

    with pytest.raises(InvalidValueError) as raised:
        key.record_usage(count=count, last_used_at=now, last_used_ip=None)

    assert raised.value.field == "count"
    assert key.usage_count == 0
    assert key.collect_events() == []


# ---- state rebuilt from events ----------------------------------------------------------------


def test_state_rebuilt_from_the_events_equals_the_live_key(now: datetime) -> None:
    key = issue(now, expires_at=now + timedelta(days=3))
    key.rename("deploy", now)
    key.describe("d", now)
    key.change_permissions({"api_keys:write": True}, owner_is_superuser=False, now=now)
    key.change_expiry(None, now)
    rotate(key, now, grace_seconds=60)
    key.record_usage(count=5, last_used_at=now, last_used_ip="192.0.2.1")
    key.revoke("done")
    events = key.collect_events()

    rebuilt = events[0].mutate(None)
    for event in events[1:]:
        rebuilt = event.mutate(rebuilt)

    assert len(events) == 8
    assert rebuilt == key
    assert vars(rebuilt) == vars(key)
