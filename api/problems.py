"""Errors as RFC 9457 problems: one table maps each exception type to status, type and title.

Domain errors know nothing of HTTP; this is the one place that gives them a status. Anything
not in the table is a 500 whose body says nothing of the internals, logged with the request's id
as its type and SQLSTATE only (``ErrorSummary``: never its text or traceback, which can hold data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import sqlalchemy.exc
from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
    ValidationException,
)
from psycopg.errors import UndefinedColumn

from api.breaker import DATABASE_UNAVAILABLE
from domain import errors
from domain.audit import current_audit_context
from eventstore.audit_chain.merkle import ProofError
from projections.audit_log.evidence import ForgedEntryError
from projections.runner import ErrorSummary

logger = logging.getLogger("ledgerline.api")
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://ledgerline.dev/problems/"


@dataclass(frozen=True)
class Problem:
    status: int
    type: str
    title: str


# Most specific first: the first entry the exception is an instance of wins.
PROBLEMS: tuple[tuple[type[BaseException], Problem], ...] = (
    (errors.VersionMismatchError, Problem(412, "precondition-failed", "The resource has changed")),
    (errors.UniquenessError, Problem(409, "already-exists", "Already taken")),
    (errors.ConflictError, Problem(409, "conflict", "The resource is not in a state that allows this")),
    (
        errors.ConcurrentChangeError,
        Problem(409, "concurrent-change", "Too many concurrent changes, try again"),
    ),
    (errors.NotFoundError, Problem(404, "not-found", "Not found")),
    (errors.ScopeNotAllowedError, Problem(403, "forbidden", "Not allowed")),
    (errors.AuthenticationError, Problem(401, "unauthenticated", "Authentication required")),
    (errors.WrongPasswordError, Problem(422, "wrong-password", "The current password is wrong")),
    (errors.VerificationTokenError, Problem(422, "invalid-token", "The verification token is invalid")),
    (errors.InvalidValueError, Problem(422, "invalid-value", "A value breaks a rule")),
    (ValidationException, Problem(422, "validation-failed", "The request does not have the expected shape")),
    (NotAuthorizedException, Problem(401, "unauthenticated", "Authentication required")),
    (PermissionDeniedException, Problem(403, "forbidden", "Not allowed")),
    (NotFoundException, Problem(404, "not-found", "Not found")),
    (MethodNotAllowedException, Problem(405, "method-not-allowed", "Method not allowed")),
    (TooManyRequestsException, Problem(429, "too-many-requests", "Too many requests")),
    (ForgedEntryError, Problem(503, "audit-entry-forged", "An audit entry contradicts its stored event")),
    # The routes check sizes and positions first: a proof that fails is a node missing from the
    # stored tree (removed by whoever could), which `GET /audit-logs/verify` locates.
    (ProofError, Problem(503, "tree-damaged", "The stored tree lacks a node this proof needs")),
)
INTERNAL = Problem(500, "internal", "Internal server error")
UNAVAILABLE = Problem(503, "unavailable", "Service unavailable")
DATABASE_DOWN = Problem(503, "database-unavailable", "The database is unavailable, try again shortly")
READ_MODEL_OUTDATED = Problem(503, "read-model-outdated", "A read table predates this version")


def problem_for(error: BaseException) -> Problem:
    for kind, problem in PROBLEMS:
        if isinstance(error, kind):
            return problem
    if isinstance(error, DATABASE_UNAVAILABLE):
        return DATABASE_DOWN
    if isinstance(error, sqlalchemy.exc.ProgrammingError) and isinstance(error.orig, UndefinedColumn):
        return READ_MODEL_OUTDATED  # upgraded, not rebuilt yet (e.g. audit_log's MACs, shape 3)
    if isinstance(error, HTTPException) and error.status_code == 503:
        return UNAVAILABLE
    if isinstance(error, ClientException):  # malformed JSON (400), body too large (413), ...
        status = error.status_code
        slug = "bad-request" if status == 400 else HTTPStatus(status).phrase.lower().replace(" ", "-")
        return Problem(
            status, slug, "The request could not be read" if status == 400 else HTTPStatus(status).phrase
        )
    return INTERNAL


def problem_response(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    problem = problem_for(error)
    detail = _detail(error, problem)
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
    }
    headers = dict(getattr(error, "headers", None) or {})
    if isinstance(error, ValidationException):
        body["errors"] = _field_errors(request, error)
        if _is_missing_body(body["errors"]):
            problem = Problem(400, "bad-request", "The request could not be read")
            body.update(
                type=TYPE_BASE + problem.type,
                title=problem.title,
                status=400,
                detail="a JSON body is required",
            )
            del body["errors"]
    elif isinstance(error, errors.InvalidValueError):
        body["errors"] = [{"field": error.field, "message": error.message}]
    if problem.status == 503:
        headers.setdefault("Retry-After", "2")
    if problem is DATABASE_DOWN:
        breaker = getattr(request.app.state, "breaker", None)
        if breaker is not None:
            breaker.failed()
    if problem.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="ledgerline", ApiKey header="X-API-Key"')
    if problem is INTERNAL:  # its type only: an error's text (a statement's parameters) may be personal
        request_id = current_audit_context().request_id
        logger.error("unhandled error (%s)", ErrorSummary.of(error), extra={"request_id": request_id})
    return Response(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _detail(error: BaseException, problem: Problem) -> str:
    if problem is INTERNAL:
        return "An unexpected error occurred; it has been logged."
    if problem is READ_MODEL_OUTDATED:
        return "An operator must run `ledgerline projections rebuild` for it; it serves again then."
    if problem is DATABASE_DOWN:
        return "The database did not answer; try again shortly."
    if isinstance(error, errors.AuthenticationError):
        return "Invalid or missing credentials."  # one message for every cause
    if isinstance(error, errors.NotFoundError):
        return f"{error.resource_type.replace('_', ' ')} not found"
    if isinstance(error, HTTPException):
        return str(error.detail)
    return str(error)


def _field_errors(request: Request[Any, Any, Any], error: ValidationException) -> list[dict[str, str]]:
    extra = error.extra if isinstance(error.extra, list) else []
    return [
        {
            "field": _wire_name(request, str(item.get("key", "body"))),
            "message": str(item.get("message", "invalid")),
        }
        for item in extra
        if isinstance(item, dict)
    ] or [{"field": "body", "message": str(error.detail)}]


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter as the client sent it (``If-Match``, ``from``), not as the handler names it."""
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    except (KeyError, AttributeError):  # no route matched (404, 405): nothing to rename
        return key
    kwarg = getattr(parameter, "kwarg_definition", None)
    names = (getattr(kwarg, attribute, None) for attribute in ("header", "query", "name"))
    return next((name for name in names if isinstance(name, str) and name), key)


def _is_missing_body(field_errors: list[dict[str, str]]) -> bool:
    return field_errors == [{"field": "data", "message": "'data'"}]
