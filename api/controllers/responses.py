"""Response helpers: envelopes and the headers every command answers with."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response
from litestar.params import HeaderParameter, QueryParameter

from api.schemas import One
from eventstore.identity import CommandResult

MinPosition = Annotated[int | None, QueryParameter(name="min_position", ge=0)]  # read-your-writes
MAX_PAGE = 1_000_000  # keeps every offset far inside a 64-bit integer
PageNumber = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)]
PerPage = Annotated[int, QueryParameter(ge=1, le=100)]
IfMatch = Annotated[str | None, HeaderParameter(name="If-Match")]  # optimistic concurrency


def written(
    data: Any, result: CommandResult, *, status: int = 200, location: str | None = None
) -> Response[Any]:
    headers = {"X-Event-Position": str(result.position), "ETag": f'"{result.version}"'}
    if location:
        headers["Location"] = location
    return Response(One(data=data), status_code=status, headers=headers)


def if_match(header: str | None) -> int | None:
    """The version a client expects (``If-Match: "3"`` or ``3``); None when not given."""
    if header is None:
        return None
    value = header.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        from litestar.exceptions import ValidationException

        raise ValidationException(
            "If-Match must be a version number", extra=[{"key": "If-Match", "message": "not a version"}]
        )
    return int(value)
