"""API-key scopes: which may be stored (validate_permissions), what they grant (grants), and what
a credential may hand out (check_within)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import (
    InvalidValueError,
    LifetimeBeyondCredentialError,
    ScopeBeyondCredentialError,
    ScopeNotAllowedError,
    UnknownScopeError,
)
from domain.scopes import (
    ADMIN_ONLY,
    EXACT_SCOPES,
    KNOWN_SCOPES,
    Credential,
    check_within,
    grants,
    role_allows,
    validate_permissions,
)

ALL_EXACT = sorted(EXACT_SCOPES)
REGULAR_SCOPES = ["users:read", "users:write", "api_keys:read", "api_keys:write"]
ADMIN_SCOPES = ["users:delete", "audit_logs:read", "api_keys:verify"]


def test_the_scope_catalogue_matches_the_contract() -> None:
    assert set(EXACT_SCOPES) == set(REGULAR_SCOPES + ADMIN_SCOPES)
    wildcards = {"admin", "*", "users:*", "api_keys:*", "audit_logs:*"}
    assert set(KNOWN_SCOPES) == set(EXACT_SCOPES) | wildcards
    assert {"users:delete", "audit_logs:read", "admin", "*"} <= ADMIN_ONLY
    assert ADMIN_ONLY.isdisjoint(REGULAR_SCOPES)


# ---- validate_permissions ---------------------------------------------------------------------


@pytest.mark.parametrize("owner_is_superuser", [False, True])
@pytest.mark.parametrize("scope", [*REGULAR_SCOPES, "api_keys:*"])
def test_anyone_may_hold_the_regular_scopes(scope: str, owner_is_superuser: bool) -> None:
    assert validate_permissions({scope: True}, owner_is_superuser=owner_is_superuser) == {scope: True}


@pytest.mark.parametrize("scope", sorted(ADMIN_ONLY))
def test_a_regular_owner_may_not_hold_an_admin_only_scope(scope: str) -> None:
    with pytest.raises(ScopeNotAllowedError) as raised:
        validate_permissions({"users:read": True, scope: True}, owner_is_superuser=False)

    assert raised.value.scope == scope


@pytest.mark.parametrize("scope", sorted(ADMIN_ONLY))
def test_a_regular_owner_may_store_an_admin_only_scope_as_false(scope: str) -> None:
    assert validate_permissions({scope: False}, owner_is_superuser=False) == {scope: False}


@pytest.mark.parametrize("scope", sorted(KNOWN_SCOPES))
def test_a_superuser_owner_may_hold_every_known_scope(scope: str) -> None:
    assert validate_permissions({scope: True}, owner_is_superuser=True) == {scope: True}


@pytest.mark.parametrize("owner_is_superuser", [False, True])
@pytest.mark.parametrize(
    "scope",
    [
        "users:admin",
        "Users:read",
        "USERS:*",
        "users",
        "read",
        "",
        " users:read",
        "all",
        "audit_logs:write",
        "**",
    ],
)
def test_unknown_scopes_are_refused(scope: str, owner_is_superuser: bool) -> None:
    with pytest.raises(UnknownScopeError) as raised:
        validate_permissions({scope: True}, owner_is_superuser=owner_is_superuser)

    assert raised.value.scope == scope
    assert isinstance(raised.value, InvalidValueError)


@pytest.mark.parametrize("value", [1, 0, "true", "false", None, 1.0, [True]])
def test_non_boolean_values_are_refused(value: object) -> None:
    with pytest.raises(InvalidValueError) as raised:
        validate_permissions({"users:read": value}, owner_is_superuser=True)  # type: ignore[dict-item]

    assert raised.value.field == "permissions"


def test_validate_returns_a_sorted_copy() -> None:
    given = {"users:write": True, "api_keys:read": False, "users:read": True}

    checked = validate_permissions(given, owner_is_superuser=False)

    assert checked == given
    assert checked is not given
    assert list(checked) == ["api_keys:read", "users:read", "users:write"]


def test_an_empty_permission_map_is_valid() -> None:
    assert validate_permissions({}, owner_is_superuser=False) == {}


# ---- grants -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [*ALL_EXACT, "admin", "*", "users:*"])
@pytest.mark.parametrize("wildcard", ["*", "admin"])
def test_star_and_admin_grant_everything_to_a_superuser_owner(wildcard: str, scope: str) -> None:
    assert grants({wildcard: True}, scope, owner_is_superuser=True) is True


@pytest.mark.parametrize("scope", ["users:read", "users:write", "users:delete"])
def test_users_wildcard_grants_every_users_scope(scope: str) -> None:
    assert grants({"users:*": True}, scope, owner_is_superuser=True) is True


@pytest.mark.parametrize("scope", ["api_keys:read", "api_keys:write", "audit_logs:read", "admin"])
def test_users_wildcard_grants_nothing_outside_users(scope: str) -> None:
    assert grants({"users:*": True}, scope, owner_is_superuser=True) is False


@pytest.mark.parametrize("scope", ["api_keys:read", "api_keys:write"])
def test_api_keys_wildcard_grants_api_key_scopes_to_a_regular_owner(scope: str) -> None:
    assert grants({"api_keys:*": True}, scope, owner_is_superuser=False) is True
    assert grants({"api_keys:*": True}, "users:read", owner_is_superuser=False) is False


@pytest.mark.parametrize("scope", ALL_EXACT)
def test_an_exact_scope_grants_only_itself(scope: str) -> None:
    permissions = {scope: True}

    granted = [other for other in ALL_EXACT if grants(permissions, other, owner_is_superuser=True)]

    assert granted == [scope]


@pytest.mark.parametrize("scope", ALL_EXACT)
@pytest.mark.parametrize("wildcard", ["*", "admin", "users:*"])
def test_a_scope_set_to_false_grants_nothing(wildcard: str, scope: str) -> None:
    assert grants({wildcard: False, scope: False}, scope, owner_is_superuser=True) is False


@pytest.mark.parametrize("owner_is_superuser", [False, True])
@pytest.mark.parametrize("scope", ALL_EXACT)
def test_no_permissions_grant_nothing(scope: str, owner_is_superuser: bool) -> None:
    assert grants({}, scope, owner_is_superuser=owner_is_superuser) is False


@pytest.mark.parametrize("requested", sorted(ADMIN_ONLY))
@pytest.mark.parametrize("stored", sorted(ADMIN_ONLY))
def test_a_regular_owners_key_never_grants_an_admin_only_scope(stored: str, requested: str) -> None:
    """Even when stored (e.g. the owner was an admin when the key was issued)."""
    permissions = {scope: True for scope in KNOWN_SCOPES}

    assert grants({stored: True}, requested, owner_is_superuser=False) is False
    assert grants(permissions, requested, owner_is_superuser=False) is False


@pytest.mark.parametrize("scope", REGULAR_SCOPES)
def test_a_regular_owner_keeps_the_regular_scopes_they_hold(scope: str) -> None:
    assert grants({scope: True}, scope, owner_is_superuser=False) is True


# ---- check_within: a credential hands out only what it holds ------------------------------------


def _granted_by(permissions: dict[str, bool], superuser: bool) -> set[str]:
    return {scope for scope in KNOWN_SCOPES if grants(permissions, scope, owner_is_superuser=superuser)}


@pytest.mark.parametrize("superuser", [False, True])
@pytest.mark.parametrize(
    "held", [*map(lambda s: {s: True}, sorted(KNOWN_SCOPES)), {}, {"users:read": True, "api_keys:*": True}]
)
@pytest.mark.parametrize(
    "requested", [*map(lambda s: {s: True}, sorted(KNOWN_SCOPES)), {"users:read": True, "users:write": True}]
)
def test_a_key_may_be_asked_for_only_what_the_credential_grants(
    held: dict[str, bool], requested: dict[str, bool], superuser: bool
) -> None:
    """Every pairing: allowed exactly when everything the requested map grants (wildcards
    included, as wildcards) is granted by the credential."""
    credential = Credential(holder_is_superuser=superuser, permissions=held)
    allowed = _granted_by(requested, True) <= _granted_by(held, superuser)

    if allowed:
        check_within(credential, requested)
    else:
        with pytest.raises(ScopeBeyondCredentialError):
            check_within(credential, requested)


@pytest.mark.parametrize("requested", ["*", "admin", "users:*", "audit_logs:*"])
def test_holding_every_exact_scope_is_not_holding_a_wildcard(requested: str) -> None:
    """A wildcard also covers scopes added later: only a wildcard hands one out."""
    every_exact = Credential(holder_is_superuser=True, permissions={scope: True for scope in EXACT_SCOPES})

    with pytest.raises(ScopeBeyondCredentialError) as raised:
        check_within(every_exact, {requested: True})

    assert raised.value.scope == requested and isinstance(raised.value, ScopeNotAllowedError)


def test_scopes_asked_for_as_false_need_nothing() -> None:
    check_within(Credential(holder_is_superuser=False, permissions={}), {"users:read": False, "*": False})


def test_unknown_scopes_are_left_to_validation() -> None:
    """They are a 422 (validate_permissions), not a 403."""
    check_within(Credential(holder_is_superuser=False, permissions={}), {"users:fly": True})


@pytest.mark.parametrize("scope", sorted(KNOWN_SCOPES))
def test_an_access_token_carries_its_holders_rights(scope: str) -> None:
    check_within(Credential(holder_is_superuser=True), {scope: True})
    regular = Credential(holder_is_superuser=False)
    if scope in ADMIN_ONLY:
        with pytest.raises(ScopeBeyondCredentialError):
            check_within(regular, {scope: True})
    else:
        check_within(regular, {scope: True})


def test_a_trusted_caller_is_limited_by_the_owners_role_only() -> None:
    check_within(None, {"*": True})


# ---- one home for the admin-only rule -----------------------------------------------------------


@pytest.mark.parametrize("superuser", [False, True])
@pytest.mark.parametrize("scope", sorted(KNOWN_SCOPES))
def test_keys_tokens_and_stored_maps_follow_the_one_role_rule(scope: str, superuser: bool) -> None:
    """What a role may hold is what a token of it grants, what a key of it may store, and the
    most a key of it grants (even holding ``*``)."""
    allowed = role_allows(scope, is_superuser=superuser)
    stored = True
    try:
        validate_permissions({scope: True}, owner_is_superuser=superuser)
    except ScopeNotAllowedError:
        stored = False

    assert Credential(holder_is_superuser=superuser).grants(scope) is allowed
    assert stored is allowed
    assert grants({"*": True}, scope, owner_is_superuser=superuser) is allowed


# ---- check_within: nor anything that outlives it --------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("holds_until", "asked_until", "allowed"),
    [
        (None, None, True),
        (None, NOW + 100 * HOUR, True),
        (NOW + HOUR, None, False),  # forever is later than any time
        (NOW + HOUR, NOW + 2 * HOUR, False),
        (NOW + HOUR, NOW + HOUR, True),
        (NOW + HOUR, NOW + HOUR / 2, True),
    ],
)
def test_a_key_may_not_be_asked_to_outlive_the_credential(
    holds_until: datetime | None, asked_until: datetime | None, allowed: bool
) -> None:
    credential = Credential(holder_is_superuser=True, permissions={"*": True}, expires_at=holds_until)

    if allowed:
        check_within(credential, {}, asked_until)
    else:
        with pytest.raises(LifetimeBeyondCredentialError) as raised:
            check_within(credential, {}, asked_until)
        assert isinstance(raised.value, ScopeNotAllowedError)  # a 403


def test_without_an_expiry_the_key_asked_for_lives_forever() -> None:
    """The strict default: a caller that names no expiry asks for a key that never ends."""
    with pytest.raises(LifetimeBeyondCredentialError):
        check_within(Credential(holder_is_superuser=True, permissions={"*": True}, expires_at=NOW), {})


@pytest.mark.parametrize("asked_until", [None, NOW, NOW - HOUR])
def test_a_previous_secret_in_its_grace_hands_out_nothing(asked_until: datetime | None) -> None:
    in_grace = Credential(
        holder_is_superuser=True, permissions={"*": True}, expires_at=NOW + HOUR, in_grace=True
    )

    with pytest.raises(LifetimeBeyondCredentialError):
        check_within(in_grace, {}, asked_until)


@pytest.mark.parametrize(
    ("permissions", "superuser", "everything"),
    [
        (None, True, True),
        (None, False, False),
        ({"*": True}, True, True),
        ({"admin": True}, True, True),
        ({scope: True for scope in EXACT_SCOPES}, True, False),
        ({"users:*": True, "api_keys:*": True, "audit_logs:*": True}, True, False),
        ({"*": True}, False, False),
    ],
)
def test_only_a_token_of_an_admin_or_a_star_or_admin_key_grants_everything(
    permissions: dict[str, bool] | None, superuser: bool, everything: bool
) -> None:
    assert (
        Credential(holder_is_superuser=superuser, permissions=permissions).grants_everything() is everything
    )


@pytest.mark.parametrize("superuser", [False, True])
def test_the_api_keys_wildcard_does_not_cover_verifying_keys(superuser: bool) -> None:
    """``api_keys:verify`` is granted only by itself, ``admin`` or ``*``, and only to an admin's
    key: ``api_keys:*`` stays a regular user's scope (decision 0017)."""
    assert grants({"api_keys:*": True}, "api_keys:verify", owner_is_superuser=superuser) is False
    assert grants({"api_keys:verify": True}, "api_keys:verify", owner_is_superuser=superuser) is superuser
    assert grants({"admin": True}, "api_keys:verify", owner_is_superuser=superuser) is superuser
    with pytest.raises(ScopeBeyondCredentialError):
        check_within(
            Credential(holder_is_superuser=True, permissions={"api_keys:*": True}), {"api_keys:verify": True}
        )
