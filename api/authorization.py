"""What each route needs, in one table, and the one guard that enforces it.

A route needs an authenticated caller and, optionally, a scope. Scopes limit what a key may call;
the owner's role limits which resources (a regular user reaches only themself and their own
keys; asking for another user's resource answers 404, not 403, so existence is not revealed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from api.context import AUTH_ERROR, PRINCIPAL
from api.security import Principal
from domain.errors import AuthenticationError, UserNotFoundError


@dataclass(frozen=True)
class Needs:
    scope: str | None  # None: any authenticated caller
    admin: bool = False  # superusers only (regardless of the scope)


PUBLIC = None
ROUTES: dict[str, Needs | None] = {
    "health": PUBLIC,
    "live": PUBLIC,
    "ready": PUBLIC,
    "register": PUBLIC,
    "login": PUBLIC,
    "refresh": PUBLIC,
    "logout": Needs(None),
    "create_user": Needs("users:write", admin=True),
    "list_users": Needs("users:read", admin=True),
    "get_me": Needs(None),
    "update_me": Needs(None),
    "change_my_password": Needs(None),
    "get_user": Needs(None),  # self, or an admin with users:read (visible_user)
    "get_user_by_username": Needs("users:read", admin=True),
    "update_user": Needs(None),  # self, or an admin with users:write (visible_user)
    "verify_user": Needs("users:write", admin=True),
    "activate_user": Needs("users:write", admin=True),
    "deactivate_user": Needs("users:write", admin=True),
    "unlock_user": Needs("users:write", admin=True),
    "delete_user": Needs("users:delete", admin=True),
    "restore_user": Needs("users:delete", admin=True),
    "erase_user": Needs("users:delete", admin=True),
    "create_api_key": Needs("api_keys:write"),
    "list_api_keys": Needs("api_keys:read"),
    "get_api_key": Needs("api_keys:read"),
    "update_api_key": Needs("api_keys:write"),
    "rotate_api_key": Needs("api_keys:write"),
    "revoke_api_key": Needs("api_keys:write"),
    "delete_api_key": Needs("api_keys:write"),
    "api_key_usage_stats": Needs("api_keys:read", admin=True),
    "user_history": Needs(None),  # self, or an admin with audit_logs:read (checked in the handler)
    "api_key_history": Needs(None),  # owner, or an admin with audit_logs:read
    "list_audit_logs": Needs("audit_logs:read", admin=True),
    "get_audit_log_entry": Needs("audit_logs:read", admin=True),
    "audit_logs_for_resource": Needs("audit_logs:read", admin=True),
    "audit_logs_for_user": Needs(None),  # self, or an admin with audit_logs:read (visible_user)
    "audit_log_statistics": Needs("audit_logs:read", admin=True),
    "export_audit_logs": Needs("audit_logs:read", admin=True),
    "verify_audit_chain": Needs("audit_logs:read", admin=True),
    "audit_public_key": PUBLIC,  # a public key: anyone may check a bundle or checkpoint
}


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get("state", {}).get(PRINCIPAL)
    if principal is None:  # why authentication failed (or the database error that stopped it)
        raise connection.scope.get("state", {}).get(AUTH_ERROR) or AuthenticationError("missing")
    return principal


def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.handler_name not in ROUTES:
        raise RuntimeError(f"route {handler.handler_name} is missing from api.authorization.ROUTES")
    needs = ROUTES[handler.handler_name]
    if needs is None:
        return
    principal = principal_of(connection)
    if needs.admin and not principal.is_superuser:
        raise PermissionDeniedException("admin rights needed")
    if needs.scope is not None and not principal.may(needs.scope):
        raise PermissionDeniedException(f"the credential lacks the {needs.scope} scope")


def visible_user(principal: Principal, user_id: UUID, scope: str) -> UUID:
    """The user id, if the caller may act on that user with ``scope``; otherwise 404 (a
    regular user does not learn whether someone else exists)."""
    if not principal.reaches_user(user_id, scope):
        raise UserNotFoundError(user_id)
    return user_id
