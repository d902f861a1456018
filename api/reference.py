"""docs/reference.md, rendered from the code: every scope (``domain.scopes``) and every problem
type (``api.problems``). ``python -m api.reference > docs/reference.md`` writes it; a test fails
when the page, a scope or a problem type is left undescribed or out of date."""

from __future__ import annotations

from litestar.exceptions import ClientException

from api.problems import (
    DATABASE_DOWN,
    INTERNAL,
    PROBLEMS,
    READ_MODEL_OUTDATED,
    TYPE_BASE,
    UNAVAILABLE,
    Problem,
    problem_for,
)
from domain.scopes import ADMIN_ONLY, EXACT_SCOPES, WILDCARDS

GRANTS = {
    "users:read": "read users: `GET /users/me`, a user by id, their history and audit trail as actor; "
    "admins: list and find users",
    "users:write": "change the caller's profile and password; admins: create users, change anyone's "
    "profile, verify, activate, deactivate and unlock them",
    "users:delete": "delete, restore and erase users",
    "api_keys:read": "list and read API keys, their history and usage statistics (admins: anyone's)",
    "api_keys:write": "create, change, rotate, revoke and delete API keys (never granting more than "
    "the credential in hand)",
    "api_keys:verify": "`POST /api-keys/verify`: ask whether a key another service received is good "
    "(not covered by `api_keys:*`)",
    "audit_logs:read": "read, search, export and verify the audit log; checkpoints and proofs; "
    "another user's history",
    "users:*": "every users scope, and any added later",
    "api_keys:*": "every api_keys scope but `api_keys:verify`, and any added later",
    "audit_logs:*": "every audit_logs scope, and any added later",
    "admin": "every scope (as `*`); needed for the `/subscriptions` routes",
    "*": "every scope; with an admin owner, acting on other superusers",
}
WHEN = {
    "precondition-failed": "`If-Match` names a version that is no longer the resource's current one",
    "already-exists": "a username, e-mail address or key name is taken",
    "conflict": "the resource's state does not allow this (deleted, erased, revoked, expired, "
    "already in that state)",
    "concurrent-change": "the resource changed under the command too often; retry",
    "not-found": "no such resource, or one the caller may not see",
    "forbidden": "the credential lacks the route's scope or admin rights, would hand out more than "
    "it holds, or self-registration is off",
    "unauthenticated": "credentials missing, malformed, unknown, revoked, expired or their session "
    "ended; a wrong login (`WWW-Authenticate` names both schemes)",
    "wrong-password": "the current password given to change it is wrong",
    "invalid-token": "the e-mail verification token is wrong or expired",
    "invalid-value": "a value breaks a rule no schema expresses (an unknown scope, a time in the past); "
    "`errors[]` names the field",
    "validation-failed": "the request does not have the documented shape; `errors[]` names each field",
    "method-not-allowed": "the path does not take this method",
    "too-many-requests": "too many logins from one client or for one account (`Retry-After`)",
    "audit-entry-forged": "a stored audit row contradicts its event (`ledgerline audit verify` names it)",
    "tree-damaged": "the stored Merkle tree lacks a node a proof needs",
    "internal": "an unexpected error; logged with the request id, nothing of it in the answer",
    "unavailable": "the read side has not reached the position asked for yet (`Retry-After`)",
    "database-unavailable": "the database does not answer; requests fail fast until it does (`Retry-After`)",
    "read-model-outdated": "a read table predates this release: `ledgerline projections rebuild`",
    "bad-request": "the body is not JSON, or a required body is missing",
    "request-entity-too-large": "the body is over 64 KiB",
}


def problems() -> list[Problem]:
    """Every problem the API answers, each type once, by status."""
    unreadable = [problem_for(ClientException(status_code=status)) for status in (400, 413)]
    every = [problem for _, problem in PROBLEMS] + unreadable
    every += [INTERNAL, UNAVAILABLE, DATABASE_DOWN, READ_MODEL_OUTDATED]
    unique = {problem.type: problem for problem in reversed(every)}
    return sorted(unique.values(), key=lambda problem: (problem.status, problem.type))


def render() -> str:
    lines = [
        "# Reference: scopes and problem types",
        "",
        "Generated from the code (`python -m api.reference > docs/reference.md`; a test fails when it",
        "drifts). The OpenAPI document (`/schema/openapi.json`) names the scope each operation needs",
        "(`x-required-scope`, `x-admin-only`) and the problems it can answer.",
        "",
        "## Scopes",
        "",
        "An API key grants only the scopes it holds (`permissions`), and never more than its owner",
        "has; an access token from login grants its user's rights. Admin-only scopes can be held only",
        "by a superuser's key.",
        "",
        "| scope | grants | admin-only |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| `{scope}` | {GRANTS[scope]} | {'yes' if scope in ADMIN_ONLY else 'no'} |"
        for scope in (*EXACT_SCOPES, *WILDCARDS)
    ]
    lines += [
        "",
        "## Problem types",
        "",
        "Every error is `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`, and",
        "for invalid input `errors` (`field`, `message`). Types are URIs under",
        f"`{TYPE_BASE}`.",
        "",
        "| type | status | title | when |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{problem.type}` | {problem.status} | {problem.title} | {WHEN[problem.type]} |"
        for problem in problems()
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
