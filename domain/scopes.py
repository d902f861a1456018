"""API-key scopes: which exist, which need an admin owner, what a set of scopes grants, and the
one rule that a credential grants (and so hands out) only what it holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.errors import ScopeBeyondCredentialError, ScopeNotAllowedError, UnknownScopeError

RESOURCES = ("users", "api_keys", "audit_logs")
ACTIONS = {"users": ("read", "write", "delete"), "api_keys": ("read", "write"), "audit_logs": ("read",)}
EXACT_SCOPES = tuple(f"{resource}:{action}" for resource in RESOURCES for action in ACTIONS[resource])
WILDCARDS = ("admin", "*", *(f"{resource}:*" for resource in RESOURCES))
KNOWN_SCOPES = frozenset(EXACT_SCOPES + WILDCARDS)
ADMIN_ONLY = frozenset({"users:delete", "audit_logs:read", "admin", "*", "users:*", "audit_logs:*"})


def validate_permissions(permissions: Mapping[str, bool], *, owner_is_superuser: bool) -> dict[str, bool]:
    """Refuse unknown scopes and scopes the owner cannot hold; return a normalised copy."""
    checked: dict[str, bool] = {}
    for scope, allowed in sorted(permissions.items()):
        if scope not in KNOWN_SCOPES:
            raise UnknownScopeError(scope)
        if not isinstance(allowed, bool):
            raise UnknownScopeError(f"{scope}={allowed!r}")
        if allowed and scope in ADMIN_ONLY and not owner_is_superuser:
            raise ScopeNotAllowedError(scope)
        checked[scope] = allowed
    return checked


def grants(permissions: Mapping[str, bool], scope: str, *, owner_is_superuser: bool) -> bool:
    """Whether a key with ``permissions`` may use ``scope``; never more than its owner has."""
    if scope in ADMIN_ONLY and not owner_is_superuser:
        return False
    resource = scope.split(":", 1)[0]
    return any(permissions.get(name, False) for name in ("*", "admin", f"{resource}:*", scope))


@dataclass(frozen=True)
class Credential:
    """The credential a request was authenticated with, as far as scopes go."""

    holder_is_superuser: bool
    permissions: Mapping[str, bool] | None = None  # a key's scopes; None: an access token

    def grants(self, scope: str) -> bool:
        """An access token carries its holder's full rights; a key only what it holds (and never
        more than its holder has)."""
        if self.permissions is None:
            return self.holder_is_superuser or scope not in ADMIN_ONLY
        return grants(self.permissions, scope, owner_is_superuser=self.holder_is_superuser)


def check_within(credential: Credential | None, permissions: Mapping[str, bool] | None) -> None:
    """Refuse a key with ``permissions`` (to be created, changed into, or renewed) that would grant
    anything ``credential`` does not: a credential never hands out more than it holds.

    Scope by scope, wildcards included: asking for ``users:*`` needs a credential that grants
    ``users:*`` itself (``users:*``, ``admin`` or ``*``), not merely today's users scopes, since a
    wildcard also covers scopes added later. ``credential`` None is a trusted caller (the CLI,
    bootstrap): only the owner's role limits the key. Unknown scopes and non-boolean values are
    left to ``validate_permissions`` (422, not 403)."""
    if credential is None:
        return
    for scope, allowed in sorted((permissions or {}).items()):
        if allowed is True and scope in KNOWN_SCOPES and not credential.grants(scope):
            raise ScopeBeyondCredentialError(scope)
