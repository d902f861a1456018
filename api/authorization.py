"""What each route needs, in one table, and the one guard that decides it from the caller (the
principal) and the credential in hand.

Scopes limit what a credential may do, on its own user too: a key acts only within the scopes it
holds; an access token from login carries its user's rights (``domain.scopes.Credential``). The
caller's role limits whose resources: a regular user reaches only themself and their own keys;
an admin reaches another user's resources only with a credential that grants the route's
``others`` scope. Reaching for someone else's resource without that answers 404, not 403, so
existence is not revealed. A superuser holds every scope, so acting on another superuser (routes
marked ``shields_superusers``) needs a credential that grants everything.

The guard works out whose resource a request is about once and leaves it in the request's state;
a handler reads that (``decided_owner``) and never parses the owner again from the raw request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import Any
from uuid import UUID

import anyio
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.handlers.base import BaseRouteHandler

from api.context import AUTH_ERROR, PRINCIPAL
from api.schemas import UpdateMe
from api.security import Principal
from domain.errors import ApiKeyNotFoundError, AuthenticationError, UserNotFoundError
from domain.scopes import EVERYTHING, Credential, check_within

OWNER = "ledgerline.owner"  # the request state's key for the owner the guard decided on


class Owner(Enum):
    """Where a route finds whose resource it acts on."""

    USER_IN_PATH = auto()  # the {user_id} path parameter
    USER_IN_QUERY = auto()  # the user_id query parameter, given at most once (absent: the caller)
    KEY_IN_PATH = auto()  # the owner of the {key_id} API key


@dataclass(frozen=True)
class Needs:
    """``scope``: what the credential must grant to use the route on the caller's own resources
    (or at all, for a route without an ``owner``); None: any authenticated caller.
    ``admin``: superusers only, whatever the scope.
    ``others``: what an admin's credential must grant to reach another user's resources
    (None: nobody reaches them); needs an ``owner``.
    ``shields_superusers``: acting on another user (the {user_id} path parameter) who is a
    superuser needs a credential that grants everything (else 403): they hold every scope."""

    scope: str | None
    admin: bool = False
    owner: Owner | None = None
    others: str | None = None
    shields_superusers: bool = False


PUBLIC = None
_USER = Owner.USER_IN_PATH
_KEY = Owner.KEY_IN_PATH
ROUTES: dict[str, Needs | None] = {
    "health": PUBLIC,
    "live": PUBLIC,
    "ready": PUBLIC,
    "metrics": PUBLIC,
    "register": PUBLIC,
    "login": PUBLIC,
    "refresh": PUBLIC,
    "logout": Needs(None),
    "create_user": Needs("users:write", admin=True),
    "list_users": Needs("users:read", admin=True),
    "get_me": Needs(None),
    "update_me": Needs("users:write"),
    "change_my_password": Needs("users:write"),
    "get_user": Needs(None, owner=_USER, others="users:read"),
    "get_user_by_username": Needs("users:read", admin=True),
    "update_user": Needs("users:write", owner=_USER, others="users:write", shields_superusers=True),
    "verify_user": Needs("users:write", admin=True, shields_superusers=True),
    "activate_user": Needs("users:write", admin=True, shields_superusers=True),
    "deactivate_user": Needs("users:write", admin=True, shields_superusers=True),
    "unlock_user": Needs("users:write", admin=True, shields_superusers=True),
    "delete_user": Needs("users:delete", admin=True, shields_superusers=True),
    "restore_user": Needs("users:delete", admin=True, shields_superusers=True),
    "erase_user": Needs("users:delete", admin=True, shields_superusers=True),
    "create_api_key": Needs("api_keys:write"),  # always the caller's own
    "list_api_keys": Needs("api_keys:read", owner=Owner.USER_IN_QUERY, others="api_keys:read"),
    "get_api_key": Needs("api_keys:read", owner=_KEY, others="api_keys:read"),
    "update_api_key": Needs("api_keys:write", owner=_KEY, others="api_keys:write"),
    "rotate_api_key": Needs("api_keys:write", owner=_KEY, others="api_keys:write"),
    "revoke_api_key": Needs("api_keys:write", owner=_KEY, others="api_keys:write"),
    "delete_api_key": Needs("api_keys:write", owner=_KEY, others="api_keys:write"),
    "api_key_usage_stats": Needs("api_keys:read", owner=Owner.USER_IN_QUERY, others="api_keys:read"),
    "verify_api_key": Needs("api_keys:verify", admin=True),  # an admin-only scope
    "user_history": Needs("users:read", owner=_USER, others="audit_logs:read"),
    "api_key_history": Needs("api_keys:read", owner=_KEY, others="audit_logs:read"),
    "list_audit_logs": Needs("audit_logs:read", admin=True),
    "get_audit_log_entry": Needs("audit_logs:read", admin=True),
    "audit_logs_for_resource": Needs("audit_logs:read", admin=True),
    "audit_logs_for_user": Needs("users:read", owner=_USER, others="audit_logs:read"),
    "audit_log_statistics": Needs("audit_logs:read", admin=True),
    "export_audit_logs": Needs("audit_logs:read", admin=True),
    "verify_audit_chain": Needs("audit_logs:read", admin=True),
    "audit_checkpoint": Needs("audit_logs:read", admin=True),
    "audit_inclusion_proof": Needs("audit_logs:read", admin=True),
    "audit_consistency_proof": Needs("audit_logs:read", admin=True),
    "audit_public_key": PUBLIC,  # a public key: anyone may check a bundle or checkpoint
    # Streaming: a subscription reads every audit entry from now on, and the answer carries a
    # signing secret: superusers whose credential grants everything (admin or *) only.
    "create_subscription": Needs("admin", admin=True),
    "list_subscriptions": Needs("admin", admin=True),
    "get_subscription": Needs("admin", admin=True),
    "pause_subscription": Needs("admin", admin=True),
    "resume_subscription": Needs("admin", admin=True),
    "delete_subscription": Needs("admin", admin=True),
}


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get("state", {}).get(PRINCIPAL)
    if principal is None:  # why authentication failed (or the database error that stopped it)
        raise connection.scope.get("state", {}).get(AUTH_ERROR) or AuthenticationError("missing")
    return principal


def credential_of(principal: Principal) -> Credential:
    """The credential in hand, as the scope rules see it: a key's scopes (or a token's None) and
    how long it lives."""
    return Credential(
        holder_is_superuser=principal.is_superuser,
        permissions=principal.permissions,
        expires_at=principal.expires_at,
        in_grace=principal.in_grace,
    )


def decided_owner(request: Request[Any, Any, Any]) -> UUID:
    """Whose resource the request acts on, as the guard decided it (a handler dependency)."""
    owner: UUID = request.scope["state"][OWNER]
    return owner


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The guard of every controller: the table decides, handlers check nothing themselves."""
    if handler.handler_name not in ROUTES:
        if _is_automatic_options(handler):
            return  # Litestar's own answer (204 with Allow): it runs no code of ours, reveals nothing
        raise RuntimeError(f"route {handler.handler_name} is missing from api.authorization.ROUTES")
    needs = ROUTES[handler.handler_name]
    if needs is None:
        return
    principal = principal_of(connection)
    if needs.admin and not principal.is_superuser:
        raise PermissionDeniedException("admin rights needed")
    if needs.owner is None:
        _require(principal, needs.scope)
    else:
        owner_id, missing = await _owner(connection, handler, needs.owner, principal)
        reach(principal, owner_id, needs, missing)
        connection.scope.setdefault("state", {})[OWNER] = owner_id
    if needs.shields_superusers:
        await _shield_superusers(connection, handler, principal)


def reach(principal: Principal, owner_id: UUID, needs: Needs, missing: Exception) -> None:
    """The one rule for whose resources a caller reaches: their own with the route's scope, or as
    an admin with its ``others`` scope (what one may read of anyone, one may read of oneself;
    else 403: they know it exists); another user's only as an admin whose credential grants the
    route's ``others`` scope (else ``missing``: a 404 that does not reveal whether it exists)."""
    reaches_others = bool(
        principal.is_superuser and needs.others and credential_of(principal).grants(needs.others)
    )
    if owner_id == principal.user_id:
        if not reaches_others:
            _require(principal, needs.scope)
    elif not reaches_others:
        raise missing


def refuse_privileged_fields(principal: Principal, change: UpdateMe) -> None:
    """A user changes their own profile; ``is_active`` and ``is_verified`` change only through
    their own routes, and only an admin sets ``is_superuser`` (403 before anything is written)."""
    if change.is_active is not msgspec.UNSET or change.is_verified is not msgspec.UNSET:
        raise PermissionDeniedException("is_active and is_verified change through their own routes")
    if change.is_superuser is not msgspec.UNSET and not principal.is_superuser:
        raise PermissionDeniedException("only admins may change is_superuser")
    if change.is_superuser is True:
        check_may_make_superuser(principal)


def check_may_make_superuser(principal: Principal) -> None:
    """A superuser holds every scope, so making one hands out everything: the credential in hand
    must grant everything too (an admin's access token, or a key holding ``*`` or ``admin``)."""
    check_within(credential_of(principal), EVERYTHING)


async def _shield_superusers(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, principal: Principal
) -> None:
    """Another user who is a superuser holds every scope: acting on them needs a credential that
    grants everything, or a key with ``users:write`` could demote or lock out an admin who holds
    more than it. Their record is read only when the credential does not grant everything."""
    target: UUID = connection.path_params["user_id"]
    if target == principal.user_id or credential_of(principal).grants_everything():
        return
    identity = _services(handler).identity
    user = await anyio.to_thread.run_sync(identity.get_user, target)  # the event store blocks
    if user.is_superuser:
        raise PermissionDeniedException("acting on a superuser needs a credential that grants everything")


def _require(principal: Principal, scope: str | None) -> None:
    if scope is not None and not credential_of(principal).grants(scope):
        raise PermissionDeniedException(f"the credential lacks the {scope} scope")


async def _owner(
    connection: ASGIConnection[Any, Any, Any, Any],
    handler: BaseRouteHandler,
    where: Owner,
    principal: Principal,
) -> tuple[UUID, Exception]:
    """Whose resource the request is about, and the 404 to answer when the caller may not know.
    Worked out here only: the handler reads it back (``decided_owner``)."""
    if where is Owner.KEY_IN_PATH:
        key_id = connection.path_params["key_id"]
        identity = _services(handler).identity
        key = await anyio.to_thread.run_sync(identity.get_api_key, key_id)  # the event store blocks
        assert key.owner_id is not None
        return key.owner_id, ApiKeyNotFoundError(key_id)
    if where is Owner.USER_IN_PATH:
        user_id = connection.path_params["user_id"]
        return user_id, UserNotFoundError(user_id)
    given = connection.query_params.getall("user_id", [])
    if not given:
        return principal.user_id, UserNotFoundError(principal.user_id)
    reason = "must be given at most once" if len(given) > 1 else "must be a UUID"
    try:
        if len(given) > 1:  # which one was meant? Refused, not guessed
            raise ValueError(reason)
        user_id = UUID(given[0])
    except ValueError as error:
        raise ValidationException(
            f"user_id {reason}", extra=[{"key": "user_id", "message": reason}]
        ) from error
    return user_id, UserNotFoundError(user_id)


def _services(handler: BaseRouteHandler) -> Any:
    """The ``services`` dependency the application provides (a guard gets no injected values)."""
    return handler.resolve_dependencies()["services"].dependency()


def _is_automatic_options(handler: BaseRouteHandler) -> bool:
    """Litestar adds an OPTIONS handler to every path that declares none (it answers CORS
    preflights and ``Allow``); we declare none, so no other OPTIONS-only handler exists."""
    methods: set[str] = getattr(handler, "http_methods", set())
    return methods == {"OPTIONS"} and handler.handler_name == "options_handler"
