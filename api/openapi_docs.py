"""What the OpenAPI document declares beyond Litestar's defaults: the problems every route can
answer (RFC 9457 bodies, so each status and the problem+json media type are documented), the
media types of a route that answers in more than one (``opt={"media_types": (...)}``), and that
request bodies refuse unknown fields (``additionalProperties: false``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar._openapi.plugin import OpenAPIPlugin
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.config.app import AppConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, PathItem, Schema
from litestar.plugins import InitPlugin, ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.typing import FieldDefinition

from api.problems import PROBLEM_JSON
from api.schemas import Body

if TYPE_CHECKING:
    from litestar import Litestar


class FieldError(msgspec.Struct):
    field: str
    message: str


class ProblemOut(msgspec.Struct):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | msgspec.UnsetType = msgspec.UNSET


ANSWERS = {
    400: "The request could not be read (malformed JSON, a missing body)",
    401: "Missing or bad credentials",
    403: "Authenticated but not allowed",
    404: "Not found, or not visible to the caller",
    405: "Method not allowed",
    409: "A state conflict (already taken, already in that state)",
    412: "If-Match names a version that is no longer current",
    413: "The body is too large",
    422: "Well-formed input that breaks a rule (errors[] names each field)",
    429: "Too many requests (Retry-After)",
    503: "The database or the read side is not available yet (Retry-After)",
}


class DocumentProblems(InitPlugin, ReceiveRoutePlugin):
    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.on_startup.append(_document_media_types)
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            documented: dict[int, Any] = {
                status: ResponseSpec(ProblemOut, description=text, media_type=PROBLEM_JSON)
                for status, text in ANSWERS.items()
            }
            if handler.status_code == 204:  # no body, so no media type to document
                documented[204] = ResponseSpec(None, description="Done; nothing follows")
            handler.responses = {**documented, **(handler.responses or {})}


class ClosedBodies(StructSchemaPlugin):
    """A request body (``api.schemas.Body``) is ``forbid_unknown_fields``: say so."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(Body)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


def _document_media_types(app: Litestar) -> None:
    """Litestar documents one media type per response; list each one a handler declares."""
    paths = app.plugins.get(OpenAPIPlugin).provide_openapi().paths or {}
    for route in app.routes:
        for handler in route.route_handlers if isinstance(route, HTTPRoute) else ():
            kinds = handler.opt.get("media_types", ())
            for method in handler.http_methods if kinds else ():
                success = _response(paths.get(route.path_format), method, handler.status_code)
                if success is not None and success.content:
                    schema = next(iter(success.content.values())).schema
                    success.content = {kind: OpenAPIMediaType(schema=schema) for kind in kinds}


def _response(path: PathItem | None, method: str, status: int) -> OpenAPIResponse | None:
    operation = getattr(path, method.lower(), None)
    response = (operation.responses or {}).get(str(status)) if operation is not None else None
    return response if isinstance(response, OpenAPIResponse) else None
