"""Response helpers: envelopes and the headers every command answers with."""

from __future__ import annotations

from typing import Annotated, TypeVar

from litestar import Response
from litestar.params import HeaderParameter, QueryParameter

from api.schemas import END, One
from eventstore.identity import CommandResult

T = TypeVar("T")

# Litestar's OpenAPI drops ge/le of an optional integer; schema_extra puts them back.
MinPosition = Annotated[  # read-your-writes
    int | None, QueryParameter(name="min_position", ge=0, schema_extra={"minimum": 0})
]
MAX_PAGE = 1_000_000  # keeps every offset far inside a 64-bit integer
PageNumber = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)]
PerPage = Annotated[int, QueryParameter(ge=1, le=100)]
# What a page's `next_cursor` said, sent back as it was: the document names its format so that a
# client (or a fuzzer) knows not to make one up.
Cursor = Annotated[
    str | None,
    QueryParameter(
        max_length=512, description="a `next_cursor` as answered", schema_extra={"format": "cursor"}
    ),
]
PositionCursor = Annotated[
    str | None,
    QueryParameter(
        max_length=512,
        description="a `next_cursor` as answered",
        schema_extra={"format": "position-cursor"},
    ),
]
# Optimistic concurrency: the version a client expects, `"3"`, `W/"3"` or `3` (ASCII digits only:
# "²".isdigit() is True, and int() of 5,000 digits raises).
IF_MATCH = r'^(?:W/)?(?:"[0-9]{1,18}"|[0-9]{1,18})' + END
IfMatch = Annotated[str | None, HeaderParameter(name="If-Match", pattern=IF_MATCH, max_length=23)]


# A query-string time in RFC 3339 (declared as text: Litestar would take "0.5" for a Unix time).
RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
    + END
)
TIME = {"pattern": RFC3339, "schema_extra": {"format": "date-time"}}
QueryTime = Annotated[str | None, QueryParameter(description="RFC 3339 with a UTC offset", **TIME)]


def written(
    data: T, result: CommandResult, *, status: int = 200, location: str | None = None
) -> Response[One[T]]:
    headers = {"X-Event-Position": str(result.position), "ETag": f'"{result.version}"'}
    if location:
        headers["Location"] = location
    return Response(One(data=data), status_code=status, headers=headers)


def if_match(header: str | None) -> int | None:
    """The version a client expects (a header that matched ``IF_MATCH``); None when not given."""
    return None if header is None else int(header.removeprefix("W/").strip('"'))
