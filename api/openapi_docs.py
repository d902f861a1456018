"""The OpenAPI document, completed from what the code already says (decision 0015).

Litestar writes paths, parameters, bodies and success schemas from the handlers' signatures.
``complete_document`` then adds, for every operation and without a per-route edit:

- ``operationId``: the handler's name in camelCase (``activate_user`` -> ``activateUser``; a
  health route's alias at the root gets ``AtRoot``);
- ``security`` from ``api.authorization.ROUTES`` (public routes: none; the others: an API key
  or a bearer token, with the scope the route needs in ``x-required-scope``);
- the problems it can answer (``application/problem+json``, schema ``Problem``), derived from
  what the operation takes: credentials (401, 403), path parameters or whose resource (404),
  any input (422), a body (400, 413), ``If-Match`` (412), a command (409), a guarded path
  (503: database or read side), plus what a handler declares in ``opt={"problems": ...}``;
- the headers ``ETag``, ``X-Event-Position``, ``Location`` and ``Retry-After`` where they occur;
- the scopes as an enum (``Scope``, from ``domain.scopes``) wherever permissions are named;
- each media type of a route that answers in more than one (``opt={"media_types": (...)}``).

Request bodies refuse unknown fields (``ClosedBodies``: ``additionalProperties: false``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from litestar._openapi.plugin import OpenAPIPlugin
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.config.app import AppConfig
from litestar.openapi.spec import Schema
from litestar.plugins import InitPlugin
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

from api.authorization import ROUTES
from api.context import UNGUARDED
from api.problems import PROBLEM_JSON
from api.schemas import Body
from domain.scopes import ADMIN_ONLY, KNOWN_SCOPES

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.handlers import HTTPRouteHandler


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct):
    """An RFC 9457 problem: ``type`` is one of docs/reference.md's problem types."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | msgspec.UnsetType = msgspec.UNSET


ANSWERS = {
    400: "The request could not be read (malformed JSON, a missing body)",
    401: "Missing or bad credentials",
    403: "Authenticated but not allowed (a scope or admin rights missing)",
    404: "Not found, or not visible to the caller",
    409: "A state conflict (already taken, already in that state, a concurrent change)",
    412: "If-Match names a version that is no longer current",
    413: "The body is too large",
    422: "Well-formed input that breaks a rule (errors[] names each field)",
    429: "Too many requests (Retry-After)",
    503: "The database or the read side is not available yet (Retry-After)",
}
COMMANDS = {"post", "put", "patch", "delete"}
METHODS = (*COMMANDS, "get", "head", "options")
JSON = "application/json"
SECURITY_SCHEMES = {
    "apiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (`llk_...`); it grants only the scopes it holds "
        "(`Authorization: Bearer llk_...` is accepted too).",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from `POST /api/v1/auth/login` (or `/refresh`): its user's rights.",
    },
}
AUTHENTICATED: list[dict[str, list[str]]] = [{"apiKeyAuth": []}, {"bearerAuth": []}]


def _header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "schema": schema}


POSITION = _header(
    "The event stream position of this command; pass it as `min_position` to read your write",
    {"type": "string", "pattern": "^[0-9]+$"},
)
ETAG = _header('The resource\'s version, quoted (`"3"`): send it back in If-Match', {"type": "string"})
LOCATION = _header("Where the new resource is", {"type": "string"})
RETRY_AFTER = _header("Seconds to wait before trying again", {"type": "string", "pattern": "^[0-9]+$"})


class DocumentOperations(InitPlugin):
    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.on_startup.append(complete_document)
        return app_config


class ClosedBodies(StructSchemaPlugin):
    """A request body (``api.schemas.Body``) is ``forbid_unknown_fields``: say so."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(Body)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


def complete_document(app: Litestar) -> None:
    """Completes the cached document the app serves (``/schema/openapi.json``) in place."""
    document = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(_problem_schemas())
    schemas["Scope"] = {
        "type": "string",
        "enum": sorted(KNOWN_SCOPES),
        "description": "An API-key scope; admin-only: " + ", ".join(sorted(ADMIN_ONLY)),
    }
    _name_scopes(schemas)
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, method, operation, handler in _operations(app, document):
        _complete(path, method, operation, handler, schemas)


def _operations(app: Litestar, document: dict[str, Any]) -> Iterator[tuple[str, str, Any, HTTPRouteHandler]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        item = document.get("paths", {}).get(route.path_format, {})
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                operation = item.get(method.lower())
                if operation is not None:
                    yield route.path_format, method.lower(), operation, handler


def _complete(
    path: str, method: str, operation: dict[str, Any], handler: HTTPRouteHandler, schemas: dict[str, Any]
) -> None:
    name = handler.handler_name
    camel = re.sub(r"_([a-z0-9])", lambda match: match[1].upper(), name)
    alias = len(handler.paths) > 1 and not path.startswith("/api/")  # a health route's root alias
    operation["operationId"] = f"{camel}AtRoot" if alias else camel
    needs = ROUTES.get(name)
    if needs is None:
        operation["security"] = []
    else:
        operation["security"] = AUTHENTICATED
        operation["x-required-scope"] = needs.scope
        operation["x-admin-only"] = needs.admin
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header":  # absent or a text: "null" is not None there
            parameter["schema"] = _not_null(parameter.get("schema", {}))
    responses: dict[str, Any] = operation.setdefault("responses", {})
    _document_media_types(handler, responses)
    for code, success in responses.items():
        if code.startswith("2") and _is_command(method, handler):
            _success_headers(code, success, schemas)
    if "400" in responses and 400 not in (handler.responses or {}):
        del responses["400"]  # Litestar's own guess; ours comes below when a body can be unreadable
    for status, text in sorted(problem_statuses(path, method, operation, handler).items()):
        if status in (handler.responses or {}):  # the handler documents it itself (GET /ready's 503)
            continue
        problem: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Problem"}}
        responses[str(status)] = response = {"description": text, "content": {PROBLEM_JSON: problem}}
        if status in (429, 503):
            response["headers"] = {"Retry-After": RETRY_AFTER}


def problem_statuses(
    path: str, method: str, operation: dict[str, Any], handler: HTTPRouteHandler
) -> dict[int, str]:
    """Every problem the operation can answer, derived from what it takes and who may call it."""
    needs = ROUTES.get(handler.handler_name)
    parameters = operation.get("parameters", [])
    where = {parameter["in"] for parameter in parameters}
    body = "requestBody" in operation
    statuses: set[int] = set()
    if not path.startswith(UNGUARDED):
        statuses.add(503)  # the database or the read side (api.context, api.breaker)
    if needs is not None:
        statuses.add(401)
        if needs.scope or needs.admin or needs.shields_superusers:
            statuses.add(403)
        if needs.owner is not None:
            statuses.add(404)
    if "path" in where:
        statuses |= {404, 422}
    if parameters or body:
        statuses.add(422)
    if body:
        statuses |= {400, 413}
    if any(parameter["in"] == "header" and parameter["name"] == "If-Match" for parameter in parameters):
        statuses.add(412)
    if _is_command(method, handler):
        statuses.add(409)  # a state conflict, or a change that lost a race too often
    declared = handler.opt.get("problems", {})
    statuses |= set(declared)
    return {status: declared.get(status, ANSWERS[status]) for status in statuses}


def _is_command(method: str, handler: HTTPRouteHandler) -> bool:
    """A write, unless the handler says it is a question asked by POST (``opt={"query": True}``)."""
    return method in COMMANDS and not handler.opt.get("query", False)


def _success_headers(status: str, response: dict[str, Any], schemas: dict[str, Any]) -> None:
    """``api.controllers.responses.written`` and the session routes: every command answers with
    its position; one that answers a versioned resource with its ETag; a creation with Location."""
    headers = response.setdefault("headers", {})
    headers["X-Event-Position"] = POSITION
    if _has_version(response, schemas):
        headers["ETag"] = ETAG
    if status == "201":
        headers["Location"] = LOCATION


def _has_version(response: dict[str, Any], schemas: dict[str, Any]) -> bool:
    schema = _resolve(response.get("content", {}).get(JSON, {}).get("schema", {}), schemas)
    data = _resolve(schema.get("properties", {}).get("data", {}), schemas)
    return "version" in data.get("properties", {})


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else schema


def _document_media_types(handler: HTTPRouteHandler, responses: dict[str, Any]) -> None:
    """Litestar documents one media type per response; list each one a handler declares (text,
    not JSON: a string)."""
    kinds = handler.opt.get("media_types", ())
    success = responses.get(str(handler.status_code), {})
    if handler.status_code == 204:  # no body, so no media type to document
        success.pop("content", None)
        success["description"] = "Done; nothing follows"
    if kinds and success.get("content"):
        success["content"] = {kind: {"schema": {"type": "string"}} for kind in kinds}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional header is absent or a text, never null (Litestar writes ``oneOf: [X, null]``
    with the constraints beside it; in a query, Litestar does read ``null`` as absent)."""
    options = [option for option in schema.get("oneOf", ()) if option != {"type": "null"}]
    if len(options) != 1 or len(options) == len(schema["oneOf"]):
        return schema
    return {**options[0], **{key: value for key, value in schema.items() if key != "oneOf"}}


def _name_scopes(schemas: dict[str, Any]) -> None:
    """Every ``permissions`` object maps scopes (the enum) to booleans."""
    for schema in schemas.values():
        for name, field in schema.get("properties", {}).items():
            for option in field.get("oneOf", [field]):
                if name == "permissions" and option.get("type") == "object":
                    option["propertyNames"] = {"$ref": "#/components/schemas/Scope"}


def _problem_schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([Problem], ref_template="#/components/schemas/{name}")
    return components
