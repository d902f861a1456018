"""The OpenAPI document is complete for every route the app has, including routes added later:
each operation has a readable operationId, a description, a typed success body, its problems as
problem+json, its security (public routes none), and the headers where they occur. The docs page
loads nothing from outside the app; docs/reference.md is what the code says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from api.authorization import ROUTES
from api.context import UNGUARDED
from api.controllers.responses import RFC3339
from api.reference import GRANTS, WHEN, problems, render
from api.schemas import END
from api.services import aware
from domain.scopes import KNOWN_SCOPES
from eventstore.passwords import Passwords
from ledgerline.bootstrap import build, build_app
from tests.conftest import FAST_ARGON2, settings_for

COMMANDS = {"post", "put", "patch", "delete"}
PROBLEM = {"$ref": "#/components/schemas/Problem"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Litestar, dict[str, Any], TestClient[Any]]]:
    data = tmp_path_factory.mktemp("openapi")
    components = build(
        settings_for(f"sqlite:///{data / 'l.sqlite3'}", data), init=True, passwords=Passwords(FAST_ARGON2)
    )
    try:
        app = build_app(components)
        with TestClient(app=app) as client:
            yield app, client.get("/schema/openapi.json").json(), client
    finally:
        components.close()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "patch", "delete", "head", "options"}:
                yield path, method, operation


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def typed(schema: dict[str, Any], document: dict[str, Any]) -> bool:
    """A schema that says something: not ``{}``, not a free-form object."""
    schema = resolve(schema, document)
    if any(key in schema for key in ("oneOf", "anyOf", "allOf", "enum")):
        return True
    if schema.get("type") == "object":
        return bool(schema.get("properties"))
    return "type" in schema


def test_every_route_of_the_app_is_documented(
    served: tuple[Litestar, dict[str, Any], TestClient[Any]],
) -> None:
    app, document, _ = served
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format.startswith("/schema"):
            continue
        for handler in route.route_handlers:
            if handler.include_in_schema is False or handler.http_methods == {"OPTIONS"}:
                continue
            for method in handler.http_methods - {"HEAD", "OPTIONS"}:
                assert method.lower() in document["paths"].get(route.path_format, {}), (
                    method,
                    route.path_format,
                )


def test_every_operation_is_complete(served: tuple[Litestar, dict[str, Any], TestClient[Any]]) -> None:
    _, document, _ = served
    ids = []
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        ids.append(operation.get("operationId"))
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", operation.get("operationId") or ""), where
        assert len(operation.get("description") or "") >= 10, f"{where}: give its handler a docstring"
        responses = operation["responses"]
        successes = {status: response for status, response in responses.items() if status.startswith("2")}
        assert successes, where
        for status, response in successes.items():
            for media, content in (response.get("content") or {}).items():
                assert typed(content.get("schema", {}), document), f"{where} {status} {media}: untyped"
            if method in COMMANDS and path != "/api/v1/api-keys/verify":  # a question asked by POST
                assert "X-Event-Position" in response.get("headers", {}), where
        errors = {status: response for status, response in responses.items() if status[0] in "45"}
        assert errors or path.startswith(UNGUARDED), where  # only /health and /live cannot fail
        for status, response in errors.items():
            content = response.get("content", {})
            if status == "503" and "application/problem+json" not in content:  # GET /ready: its report
                assert typed(content["application/json"]["schema"], document), where
                continue
            assert content == {"application/problem+json": {"schema": PROBLEM}}, f"{where} {status}"
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], f"{where} {status}"
        parameters = {parameter["name"]: parameter for parameter in operation.get("parameters", [])}
        if "If-Match" in parameters:
            assert "412" in responses, where
            assert "ETag" in successes[min(successes)]["headers"], where
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(responses), where
        if any(parameter["in"] == "path" for parameter in parameters.values()):
            assert "404" in responses, where
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_security_follows_the_route_table(served: tuple[Litestar, dict[str, Any], TestClient[Any]]) -> None:
    app, document, _ = served
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKeyAuth"] == {
        **schemes["apiKeyAuth"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    names = {
        (route.path_format, method.lower()): handler.handler_name
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        for method in handler.http_methods
    }
    for path, method, operation in operations(document):
        needs = ROUTES[names[(path, method)]]
        if needs is None:
            assert operation["security"] == [], (method, path)
        else:
            assert operation["security"] == [{"apiKeyAuth": []}, {"bearerAuth": []}], (method, path)
            assert operation["x-required-scope"] == needs.scope and "401" in operation["responses"]


def test_scopes_are_an_enum_wherever_permissions_are_named(
    served: tuple[Litestar, dict[str, Any], TestClient[Any]],
) -> None:
    _, document, _ = served
    schemas = document["components"]["schemas"]
    assert set(schemas["Scope"]["enum"]) == KNOWN_SCOPES
    for name in ("CreateApiKey", "ApiKeyOut"):
        assert schemas[name]["properties"]["permissions"]["propertyNames"] == {
            "$ref": "#/components/schemas/Scope"
        }


def test_the_docs_page_loads_nothing_from_outside(
    served: tuple[Litestar, dict[str, Any], TestClient[Any]],
) -> None:
    _, _, client = served
    for path in ("/schema", "/schema/swagger"):
        page = client.get(path)
        assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text, path
        assert not re.search(r"(?:src|href)=['\"]https?://", page.text), path
        for asset in re.findall(r"(?:src|href)=['\"](/schema/assets/[^'\"]+)", page.text):
            assert client.get(asset).status_code == 200, asset


def test_the_reference_page_is_what_the_code_says() -> None:
    assert set(GRANTS) == KNOWN_SCOPES, "describe every scope in api.reference.GRANTS"
    assert {problem.type for problem in problems()} <= set(WHEN), (
        "describe every problem in api.reference.WHEN"
    )
    assert (ROOT / "docs" / "reference.md").read_text() == render(), (
        "run: python -m api.reference > docs/reference.md"
    )


def test_query_times_take_what_rfc_3339_and_the_document_allow() -> None:
    """The document's pattern admits a lower-case ``t`` and ``z`` (RFC 3339 5.6); Python's
    ``fromisoformat`` refused ``z``, so the schema admitted what the server answered 422."""
    expected = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    for text in ("2024-01-02t03:04:05z", "2024-01-02T03:04:05Z", "2024-01-02 03:04:05+00:00"):
        assert re.fullmatch(RFC3339.removesuffix(END).lstrip("^"), text), text
        assert aware("from", text) == expected, text


def test_rate_limited_routes_say_so_and_questions_asked_by_post_write_nothing(
    served: tuple[Litestar, dict[str, Any], TestClient[Any]],
) -> None:
    _, document, _ = served
    for path in ("/api/v1/auth/login", "/api/v1/api-keys/verify"):
        assert "429" in document["paths"][path]["post"]["responses"], path
    verify = document["paths"]["/api/v1/api-keys/verify"]["post"]["responses"]
    assert "409" not in verify and "X-Event-Position" not in verify["200"].get("headers", {})
