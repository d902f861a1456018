"""What the OpenAPI document declares beyond Litestar's defaults: the problems every route can
answer (RFC 9457 bodies, so each status and the problem+json media type are documented), and
that request bodies refuse unknown fields (``additionalProperties: false``)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Schema
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.typing import FieldDefinition

from api.problems import PROBLEM_JSON
from api.schemas import Body


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


class DocumentProblems(ReceiveRoutePlugin):
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
