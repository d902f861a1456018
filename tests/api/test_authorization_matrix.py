"""Walk api.authorization.ROUTES for every kind of caller: admin, self, other user, each scope
(a regular user's key or an admin's key holding just that scope).

A caller that may not use a route gets 401 (no credential) or 403 (credential lacks the scope
or the role); one that may gets anything else (200, 404 for someone else's resource, 409, ...).
"""

from __future__ import annotations

from typing import Any

import pytest

from api.authorization import ROUTES
from domain.scopes import EXACT_SCOPES
from tests.api.conftest import PASSWORD, Api

CALLS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "health": ("GET", "/health", None),
    "live": ("GET", "/live", None),
    "ready": ("GET", "/ready", None),
    "metrics": ("GET", "/metrics", None),
    "register": (
        "POST",
        "/api/v1/auth/register",
        {"username": "newbie", "email": "n@example.com", "password": PASSWORD},
    ),
    "login": ("POST", "/api/v1/auth/login", {"username": "alice", "password": "wrong"}),
    "refresh": ("POST", "/api/v1/auth/refresh", {"refresh_token": "llr_x"}),
    "create_user": (
        "POST",
        "/api/v1/users",
        {"username": "made", "email": "m@example.com", "password": PASSWORD},
    ),
    "list_users": ("GET", "/api/v1/users", None),
    "get_me": ("GET", "/api/v1/users/me", None),
    "update_me": ("PATCH", "/api/v1/users/me", {"full_name": "Me"}),
    "change_my_password": (
        "POST",
        "/api/v1/users/me/change-password",
        {"current_password": "x", "new_password": PASSWORD},
    ),
    "get_user": ("GET", "/api/v1/users/{self}", None),
    "get_user_by_username": ("GET", "/api/v1/users/by-username/alice", None),
    "update_user": ("PATCH", "/api/v1/users/{self}", {"full_name": "Self"}),
    "verify_user": ("POST", "/api/v1/users/{self}/verify", None),
    "activate_user": ("POST", "/api/v1/users/{self}/activate", None),
    "deactivate_user": ("POST", "/api/v1/users/{other}/deactivate", None),
    "unlock_user": ("POST", "/api/v1/users/{self}/unlock", None),
    "delete_user": ("DELETE", "/api/v1/users/{other}", None),
    "restore_user": ("POST", "/api/v1/users/{other}/restore", None),
    "erase_user": ("POST", "/api/v1/users/{other}/erase", None),
    "create_api_key": ("POST", "/api/v1/api-keys", {"name": "matrix", "permissions": {}}),
    "list_api_keys": ("GET", "/api/v1/api-keys", None),
    "get_api_key": ("GET", "/api/v1/api-keys/{key}", None),
    "update_api_key": ("PATCH", "/api/v1/api-keys/{key}", {"description": "d"}),
    "rotate_api_key": ("POST", "/api/v1/api-keys/{key}/rotate", {"grace_seconds": 0}),
    "revoke_api_key": ("POST", "/api/v1/api-keys/{key}/revoke", None),
    "delete_api_key": ("DELETE", "/api/v1/api-keys/{key}", None),
    "api_key_usage_stats": ("GET", "/api/v1/api-keys/usage-stats", None),
    "verify_api_key": ("POST", "/api/v1/api-keys/verify", {"key": "llk_not-a-key"}),
    "user_history": ("GET", "/api/v1/users/{self}/history", None),
    "api_key_history": ("GET", "/api/v1/api-keys/{key}/history", None),
    "list_audit_logs": ("GET", "/api/v1/audit-logs", None),
    "get_audit_log_entry": ("GET", "/api/v1/audit-logs/1", None),
    "audit_logs_for_resource": ("GET", "/api/v1/audit-logs/resource/user/{self}", None),
    "audit_logs_for_user": ("GET", "/api/v1/audit-logs/user/{self}", None),
    "audit_log_statistics": ("GET", "/api/v1/audit-logs/statistics", None),
    "export_audit_logs": ("GET", "/api/v1/audit-logs/export", None),
    "verify_audit_chain": ("GET", "/api/v1/audit-logs/verify", None),
    "audit_public_key": ("GET", "/api/v1/audit-logs/public-key", None),
    "audit_checkpoint": ("GET", "/api/v1/audit-logs/checkpoint", None),
    "audit_inclusion_proof": ("GET", "/api/v1/audit-logs/1/proof", None),
    "audit_consistency_proof": ("GET", "/api/v1/audit-logs/consistency?from=1", None),
    "create_subscription": ("POST", "/api/v1/subscriptions", {"url": "https://192.0.2.1/hook"}),
    "list_subscriptions": ("GET", "/api/v1/subscriptions", None),
    "get_subscription": ("GET", "/api/v1/subscriptions/{self}", None),
    "pause_subscription": ("POST", "/api/v1/subscriptions/{self}/pause", None),
    "resume_subscription": ("POST", "/api/v1/subscriptions/{self}/resume", None),
    "delete_subscription": ("DELETE", "/api/v1/subscriptions/{self}", None),
    "logout": ("POST", "/api/v1/auth/logout", None),  # last: it ends the caller's session
}

CALLERS = [
    "anonymous",
    "admin",
    "user-token",
    "user-all-scopes",
    *(f"user-{scope}" for scope in EXACT_SCOPES),
    *(f"admin-{scope}" for scope in EXACT_SCOPES),  # an admin's key holding that one scope
]
ON_THE_CALLER = {"list_api_keys", "api_key_usage_stats"}  # no user in the call: the caller's own


def test_every_route_is_in_the_matrix() -> None:
    assert set(CALLS) == set(ROUTES)


def allowed(route: str, caller: str) -> bool:
    needs = ROUTES[route]
    if needs is None:
        return True
    if caller == "anonymous":
        return False
    is_admin = caller.startswith("admin")
    if needs.admin and not is_admin:
        return False
    if needs.scope is None or caller in ("admin", "user-token", "user-all-scopes"):
        return True
    holds = caller.split("-", 1)[1]
    if is_admin and needs.owner is not None and route not in ON_THE_CALLER:
        return True  # alice's resource: reached with the route's others scope, else 404, never 403
    return holds == needs.scope


@pytest.mark.parametrize("caller", CALLERS)
def test_each_caller_on_each_route(api: Api, caller: str) -> None:
    identity = api.components.identity
    other = identity.register_user(username="bob", email="bob@example.com", password=PASSWORD)
    headers = _credential(api, caller)
    for route, (method, template, body) in CALLS.items():
        key = identity.issue_api_key(api.user_id, name=f"target-{route}", permissions={})
        path = template.format(self=api.user_id, other=other.id, key=key.result.id)
        response = api.client.request(method, path, json=body, headers=headers)
        assert response.status_code < 500, (route, caller, response.text)
        if allowed(route, caller):
            assert response.status_code not in (401, 403) or route in ("login", "refresh"), (
                route,
                caller,
                response.text,
            )
        else:
            assert response.status_code == (401 if caller == "anonymous" else 403), (
                route,
                caller,
                response.text,
            )


def _credential(api: Api, caller: str) -> dict[str, str]:
    identity = api.components.identity
    if caller == "anonymous":
        return {}
    if caller == "admin":
        return api.as_admin()
    if caller.startswith("admin-"):
        scope = caller.removeprefix("admin-")
        return {"X-API-Key": identity.issue_api_key(api.admin_id, name=scope, permissions={scope: True}).key}
    if caller == "user-all-scopes":
        return api.as_user()
    if caller == "user-token":
        token = api.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
        return {"Authorization": f"Bearer {token.json()['data']['access_token']}"}
    scope = caller.removeprefix("user-")
    if scope in (
        "users:delete",
        "audit_logs:read",
        "api_keys:verify",
    ):  # admin-only scopes: held by nobody regular
        return {"X-API-Key": identity.issue_api_key(api.user_id, name=scope, permissions={}).key}
    return {"X-API-Key": identity.issue_api_key(api.user_id, name=scope, permissions={scope: True}).key}
