"""/audit-logs: the audit log, read-only (Litestar answers PUT, PATCH and DELETE with 405).

Every list goes through one filter (``AuditFilter``) and one query builder, keyset-paginated on
position, newest first unless ``sort_order=asc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, get
from litestar.di import Provide
from litestar.exceptions import ValidationException
from litestar.params import Parameter, QueryParameter

from api.authorization import authorize
from api.controllers.responses import TIME, MinPosition, PageNumber, PerPage, PositionCursor
from api.presenters import audit_entries_from_rows, audit_entry_from_row
from api.schemas import END, ActorCount, AuditEntryOut, AuditStatistics, Many, One
from api.services import Services, aware, decode_position_cursor, encode_position_cursor, page_info
from domain.errors import NotFoundError
from projections.audit_log.evidence import ForgedEntryError
from projections.audit_log.queries import (
    MAX_POSITION,
    AuditFilter,
    Order,
    entry,
    list_page,
    statistics,
)

MAX_DEPTH = 10_000  # entries a `page` may skip; deeper, continue with `cursor`
# schema_extra: Litestar's OpenAPI writes `le` as a float (2**63, one past the largest position).
Position = Annotated[int, Parameter(ge=0, le=MAX_POSITION, schema_extra={"maximum": MAX_POSITION})]
From = Annotated[str | None, QueryParameter(name="from", description="RFC 3339, inclusive", **TIME)]
To = Annotated[str | None, QueryParameter(description="RFC 3339, exclusive", **TIME)]
ResourceType = Literal["user", "api_key", "session", "subscription"]


@dataclass(frozen=True)
class Paging:
    page: int
    per_page: int
    order: Order
    cursor: int | None  # the last position of the previous page


def paging(
    page: PageNumber = 1,
    per_page: PerPage = 20,
    sort_by: Literal["position"] = "position",
    sort_order: Literal["asc", "desc"] = "desc",
    cursor: PositionCursor = None,
) -> Paging:
    if cursor is None and (page - 1) * per_page > MAX_DEPTH:
        raise ValidationException(
            "page is too deep", extra=[{"key": "page", "message": f"skip at most {MAX_DEPTH}; use cursor"}]
        )
    return Paging(page, per_page, sort_order, None if cursor is None else decode_position_cursor(cursor))


def window(from_: str | None, to: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = aware("from", from_), aware("to", to)
    if start is not None and end is not None and start > end:
        raise ValidationException(
            "from is after to", extra=[{"key": "from", "message": "must not exceed to"}]
        )
    return start, end


def audit_filter(
    actor_id: UUID | None = None,
    resource_type: ResourceType | None = None,
    resource_id: UUID | None = None,
    action: Annotated[str | None, Parameter(max_length=64, pattern=r"^[a-z][a-z_]*\.[a-z_]+" + END)] = None,
    status: Literal["success", "failure"] | None = None,
    from_: From = None,
    to: To = None,
    after_position: Annotated[
        int | None, Parameter(ge=0, le=MAX_POSITION, schema_extra={"minimum": 0, "maximum": MAX_POSITION})
    ] = None,
) -> AuditFilter:
    """The list's and the export's filter: key usage (traffic) only when ``action`` asks for it."""
    start, end = window(from_, to)
    return AuditFilter(
        actor_id, resource_type, resource_id, action, status, start, end, after_position, without_usage=True
    )


class AuditLogsController(Controller):
    path = "/api/v1/audit-logs"
    tags = ["audit-logs"]
    guards = [authorize]
    dependencies = {
        "audit": Provide(audit_filter, sync_to_thread=False),
        "paging": Provide(paging, sync_to_thread=False),
    }

    @get("/", sync_to_thread=True)
    def list_audit_logs(
        self, services: Services, audit: AuditFilter, paging: Paging, min_position: MinPosition = None
    ) -> Many[AuditEntryOut]:
        """The audit log (admins with audit_logs:read): filtered, newest first, page or cursor."""
        return _page(services, audit, paging, min_position)

    @get("/{position:int}", sync_to_thread=True)
    def get_audit_log_entry(
        self, position: Position, services: Services, min_position: MinPosition = None
    ) -> One[AuditEntryOut]:
        """One audit entry by its position in the event stream."""
        services.read_side_at(min_position)
        with services.engine.connect() as conn:
            row = entry(conn, position)
            if row is None:
                raise NotFoundError("audit_entry", position)
            _genuine(services, [row])
        return One(data=audit_entry_from_row(row, services.sealer))

    @get("/resource/{resource_type:str}/{resource_id:uuid}", sync_to_thread=True)
    def audit_logs_for_resource(
        self,
        resource_type: ResourceType,
        resource_id: UUID,
        services: Services,
        paging: Paging,
        min_position: MinPosition = None,
    ) -> Many[AuditEntryOut]:
        """Every entry about one resource (a user, an API key or a session)."""
        audit = AuditFilter(resource_type=resource_type, resource_id=resource_id)
        return _page(services, audit, paging, min_position)

    @get("/user/{user_id:uuid}", sync_to_thread=True)
    def audit_logs_for_user(
        self,
        user_id: UUID,
        services: Services,
        paging: Paging,
        min_position: MinPosition = None,
    ) -> Many[AuditEntryOut]:
        """What that user did (as actor): for admins with audit_logs:read, or the user themself
        (``api.authorization`` decides)."""
        services.identity.get_user(user_id)  # 404 for an unknown id
        return _page(services, AuditFilter(actor_id=user_id), paging, min_position)

    @get("/statistics", sync_to_thread=True)
    def audit_log_statistics(
        self, services: Services, from_: From = None, to: To = None, min_position: MinPosition = None
    ) -> One[AuditStatistics]:
        """Counts by action, resource type and status, and the most active actors."""
        start, end = window(from_, to)
        services.read_side_at(min_position)
        with services.engine.connect() as conn:
            counts = statistics(conn, start, end)
        actors = [ActorCount(**actor) for actor in counts.pop("top_actors")]
        return One(data=AuditStatistics(**counts, top_actors=actors))


def _genuine(services: Services, rows: list[dict[str, Any]]) -> None:
    """The read table is a cache: a row not written by the projection (its MAC fails) is never
    served as genuine (503 naming the position: `ledgerline audit verify` lists the rows their
    events contradict, a rebuild mends them)."""
    forged = services.audit_evidence.unvouched(rows)
    if forged:
        raise ForgedEntryError(forged[0])


def _page(
    services: Services, audit: AuditFilter, paging: Paging, min_position: int | None
) -> Many[AuditEntryOut]:
    services.read_side_at(min_position)
    skip = 0 if paging.cursor is not None else (paging.page - 1) * paging.per_page
    with services.engine.connect() as conn:
        rows, total = list_page(
            conn, audit, order=paging.order, limit=paging.per_page, skip=skip, cursor=paging.cursor
        )
        _genuine(services, rows)
    return Many(
        data=audit_entries_from_rows(rows, services.sealer),
        pagination=page_info(
            rows,
            total,
            page=paging.page,
            per_page=paging.per_page,
            after=paging.cursor,
            cursor_of=lambda row: encode_position_cursor(row["position"]),
        ),
    )
