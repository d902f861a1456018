"""API-key scopes: which exist, which need an admin owner, what a set of scopes grants, and the
one rule that a credential grants (and so hands out) only what it holds, in scope and in time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from domain.errors import (
    LifetimeBeyondCredentialError,
    ScopeBeyondCredentialError,
    ScopeNotAllowedError,
    UnknownScopeError,
)

RESOURCES = ("users", "api_keys", "audit_logs")
ACTIONS = {
    "users": ("read", "write", "delete"),
    "api_keys": ("read", "write", "verify"),
    "audit_logs": ("read",),
}
EXACT_SCOPES = tuple(f"{resource}:{action}" for resource in RESOURCES for action in ACTIONS[resource])
WILDCARDS = ("admin", "*", *(f"{resource}:*" for resource in RESOURCES))
KNOWN_SCOPES = frozenset(EXACT_SCOPES + WILDCARDS)
ADMIN_ONLY = frozenset(
    {"users:delete", "audit_logs:read", "api_keys:verify", "admin", "*", "users:*", "audit_logs:*"}
)
EVERYTHING = {"*": True}
# Scopes that their resource's wildcard does not cover: only themselves, ``admin`` or ``*`` grant
# them. ``api_keys:verify`` (asking whether anyone's key is good: a service's capability, not
# managing one's keys) is admin-only; were it under ``api_keys:*``, that wildcard, held by regular
# users today, would have to become admin-only too (decision 0017).
NOT_UNDER_WILDCARD = frozenset({"api_keys:verify"})


def role_allows(scope: str, *, is_superuser: bool) -> bool:
    """The one home of the admin-only rule: whether a user of that role may hold (and so be
    granted) ``scope`` at all, by a key or by a token."""
    return is_superuser or scope not in ADMIN_ONLY


def validate_permissions(permissions: Mapping[str, bool], *, owner_is_superuser: bool) -> dict[str, bool]:
    """Refuse unknown scopes and scopes the owner cannot hold; return a normalised copy."""
    checked: dict[str, bool] = {}
    for scope, allowed in sorted(permissions.items()):
        if scope not in KNOWN_SCOPES:
            raise UnknownScopeError(scope)
        if not isinstance(allowed, bool):
            raise UnknownScopeError(f"{scope}={allowed!r}")
        if allowed and not role_allows(scope, is_superuser=owner_is_superuser):
            raise ScopeNotAllowedError(scope)
        checked[scope] = allowed
    return checked


def grants(permissions: Mapping[str, bool], scope: str, *, owner_is_superuser: bool) -> bool:
    """Whether a key with ``permissions`` may use ``scope``; never more than its owner has."""
    if not role_allows(scope, is_superuser=owner_is_superuser):
        return False
    resource = scope.split(":", 1)[0]
    wildcard = () if scope in NOT_UNDER_WILDCARD else (f"{resource}:*",)
    return any(permissions.get(name, False) for name in ("*", "admin", *wildcard, scope))


@dataclass(frozen=True)
class Credential:
    """The credential a request was authenticated with, as far as scopes and lifetime go.

    ``expires_at``: when it stops working (a key's expiry, or for a rotated key's previous secret
    the earlier of that and the end of its grace); None: it does not end by time.
    ``in_grace``: the previous secret of a rotated key, still accepted until its grace ends."""

    holder_is_superuser: bool
    permissions: Mapping[str, bool] | None = None  # a key's scopes; None: an access token
    expires_at: datetime | None = None
    in_grace: bool = False

    def grants(self, scope: str) -> bool:
        """An access token carries its holder's full rights; a key only what it holds (and never
        more than its holder has)."""
        if self.permissions is None:
            return role_allows(scope, is_superuser=self.holder_is_superuser)
        return grants(self.permissions, scope, owner_is_superuser=self.holder_is_superuser)

    def grants_everything(self) -> bool:
        """What acting on a superuser needs: they hold every scope ("*": an admin's access token,
        or a key holding ``*`` or ``admin``)."""
        return self.grants("*")

    def outlives(self, expires_at: datetime | None) -> bool:
        """Whether this credential lives at least until ``expires_at`` (None: forever)."""
        return self.expires_at is None or (expires_at is not None and expires_at <= self.expires_at)


def check_within(
    credential: Credential | None, permissions: Mapping[str, bool] | None, expires_at: datetime | None = None
) -> None:
    """Refuse a key with ``permissions`` living until ``expires_at`` (None: forever) — to be
    created, changed, changed into, or renewed — that would grant anything ``credential`` does
    not, or outlive it: a credential never hands out more than it holds, in scope or in time.
    A rotated key's previous secret, during its grace, hands out nothing at all (it may not take
    over the key from the new secret, or mint a key that outlives its own grace).

    Scope by scope, wildcards included: asking for ``users:*`` needs a credential that grants
    ``users:*`` itself (``users:*``, ``admin`` or ``*``), not merely today's users scopes, since a
    wildcard also covers scopes added later. ``credential`` None is a trusted caller (the CLI,
    bootstrap): only the owner's role limits the key. Unknown scopes and non-boolean values are
    left to ``validate_permissions`` (422, not 403)."""
    if credential is None:
        return
    if credential.in_grace:
        raise LifetimeBeyondCredentialError("a previous secret in its rotation grace hands out nothing")
    for scope, allowed in sorted((permissions or {}).items()):
        if allowed is True and scope in KNOWN_SCOPES and not credential.grants(scope):
            raise ScopeBeyondCredentialError(scope)
    if not credential.outlives(expires_at):
        raise LifetimeBeyondCredentialError("it would outlive the credential in hand")
