"""API-key scopes: which exist, which need an admin owner, and what a set of scopes grants."""

from __future__ import annotations

from collections.abc import Mapping

from domain.errors import ScopeNotAllowedError, UnknownScopeError

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
