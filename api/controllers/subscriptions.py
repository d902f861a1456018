"""/subscriptions: where the audit log is pushed (admins only; ``api.authorization`` decides).

A subscription is a ``Subscription`` aggregate (its changes are audited); its delivery state
(cursor, counters, last error) is the deliverer's ``stream_cursors`` row. The signing secret is
in the creation's answer only.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post

from api.authorization import authorize
from api.controllers.responses import Cursor, MinPosition, PageNumber, PerPage, written
from api.schemas import DISPLAY_TEXT, END, Body, Many, One
from api.services import Services, decode_cursor, page_info
from domain.errors import SubscriptionNotFoundError
from domain.subscriptions import MAX_URL, Subscription
from projections.audit_log.projection import EVERY_ACTION, RESOURCE_TYPES
from projections.audit_log.queries import MAX_POSITION
from projections.streaming.cursors import CursorState, cursor_states, subscription_cursor
from projections.streaming.targets import check_target

SECRET_WARNING = "Store the secret now: it is not shown again. Receivers verify each delivery with it."  # noqa: S105
if TYPE_CHECKING:
    Action = str
else:  # every action the audit log names: an enum in the document, so clients pick, not guess
    Action = Literal[tuple(sorted(EVERY_ACTION))]
ResourceTypeName = Literal["user", "api_key", "session", "subscription"]
assert set(ResourceTypeName.__args__) == set(RESOURCE_TYPES.values())  # type: ignore[attr-defined]


class SubscriptionFilter(Body):
    actions: Annotated[list[Action], msgspec.Meta(min_length=1, max_length=100)] | None = None
    resource_types: Annotated[list[ResourceTypeName], msgspec.Meta(min_length=1, max_length=10)] | None = None


class CreateSubscription(Body):
    # http or https; what the name resolves to is checked when made and before every delivery
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL, description="http or https")]
    filter: SubscriptionFilter | None = None
    from_position: (
        Annotated[int, msgspec.Meta(ge=1, le=MAX_POSITION, description="first position to deliver")] | None
    ) = None
    description: Annotated[str, msgspec.Meta(max_length=500, pattern=rf"^{DISPLAY_TEXT}*" + END)] | None = (
        None
    )


class SubscriptionFilterOut(msgspec.Struct):
    actions: list[str] | None
    resource_types: list[str] | None


class SubscriptionOut(msgspec.Struct, kw_only=True):
    id: UUID
    url: str
    filter: SubscriptionFilterOut
    description: str | None
    from_position: int
    state: Literal["active", "paused", "deleted"]
    created_at: datetime
    updated_at: datetime
    delivered_through: int  # every matching entry up to this position was acknowledged
    lag: int  # positions written after delivered_through
    delivered: int
    failed: int  # attempts that failed (each is retried)
    last_error: str | None
    last_attempt_at: datetime | None
    last_delivered_at: datetime | None
    version: int


class NewSubscriptionOut(SubscriptionOut, kw_only=True):
    secret: str  # Standard Webhooks signing secret (whsec_...), shown once
    warning: str


class SubscriptionsController(Controller):
    path = "/api/v1/subscriptions"
    tags = ["subscriptions"]
    guards = [authorize]

    @post("/", sync_to_thread=True, status_code=201)
    def create_subscription(
        self, data: CreateSubscription, services: Services
    ) -> Response[One[NewSubscriptionOut]]:
        """Push every matching audit entry to `url`, signed per Standard Webhooks; the signing
        secret is in this answer only."""
        check_target(data.url, services.stream_policy)  # where it points now (and at every delivery)
        chosen = data.filter or SubscriptionFilter()
        created = services.identity.create_subscription(
            url=data.url,
            actions=chosen.actions,
            resource_types=list(chosen.resource_types) if chosen.resource_types is not None else None,
            from_position=data.from_position,
            description=data.description,
        )
        # From the aggregate alone: once appended, nothing may stand between the secret and its
        # one showing (no deliverer has a cursor for it yet; the head is this append's position).
        shown = _present(created.result.aggregate, None, created.result.position)
        body = NewSubscriptionOut(
            **msgspec.structs.asdict(shown), secret=created.secret, warning=SECRET_WARNING
        )
        return written(body, created.result, status=201, location=f"{self.path}/{created.result.id}")

    @get("/", sync_to_thread=True)
    def list_subscriptions(
        self,
        services: Services,
        page: PageNumber = 1,
        per_page: PerPage = 20,
        sort_by: Literal["created_at"] = "created_at",
        sort_order: Literal["asc", "desc"] = "asc",
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Many[SubscriptionOut]:
        """Every live subscription with its delivery state (`delivered_through`, `lag`,
        `last_error`, `last_attempt_at`)."""
        services.store_at(min_position)
        listed = _live(services)
        listed.sort(key=lambda s: (s.created_on, s.id), reverse=sort_order == "desc")
        after = None if cursor is None else decode_cursor(cursor, is_time=True)
        if after is None:
            chosen = listed[(page - 1) * per_page : page * per_page]
        else:  # keyset: past the cursor's (created_at, id), in the order asked for
            chosen = [s for s in listed if _beyond((s.created_on, s.id), after, sort_order == "asc")]
        shown = chosen[:per_page]
        return Many(
            data=_out(services, shown),
            pagination=page_info(
                [{"sort_key": s.created_on, "id": s.id} for s in shown],
                len(listed),
                page=page,
                per_page=per_page,
                after=after,
            ),
        )

    @get("/{subscription_id:uuid}", sync_to_thread=True)
    def get_subscription(
        self, subscription_id: UUID, services: Services, min_position: MinPosition = None
    ) -> One[SubscriptionOut]:
        """One subscription with its delivery state."""
        services.store_at(min_position)
        return One(data=_out(services, [services.identity.get_subscription(subscription_id)])[0])

    @post("/{subscription_id:uuid}/pause", sync_to_thread=True, status_code=200)
    def pause_subscription(self, subscription_id: UUID, services: Services) -> Response[One[SubscriptionOut]]:
        """Stop deliveries, keeping the cursor; 409 when already paused."""
        result = services.identity.pause_subscription(subscription_id)
        return written(_out(services, [result.aggregate])[0], result)

    @post("/{subscription_id:uuid}/resume", sync_to_thread=True, status_code=200)
    def resume_subscription(
        self, subscription_id: UUID, services: Services
    ) -> Response[One[SubscriptionOut]]:
        """Deliver again from the cursor (nothing missed while paused); 409 when not paused."""
        result = services.identity.resume_subscription(subscription_id)
        return written(_out(services, [result.aggregate])[0], result)

    @delete("/{subscription_id:uuid}", sync_to_thread=True, status_code=200)
    def delete_subscription(
        self, subscription_id: UUID, services: Services
    ) -> Response[One[SubscriptionOut]]:
        """Deliveries stop (within a second); its cursor row stays as a record."""
        result = services.identity.delete_subscription(subscription_id)
        return written(_out(services, [result.aggregate])[0], result)


def _live(services: Services) -> list[Subscription]:
    """Every live subscription (one deleted while listing is left out, not a 404)."""
    found = []
    for subscription_id in services.identity.subscription_ids():
        with contextlib.suppress(SubscriptionNotFoundError):
            found.append(services.identity.get_subscription(subscription_id))
    return found


def _beyond(key: tuple[datetime, UUID], after: tuple[Any, UUID], ascending: bool) -> bool:
    return key > after if ascending else key < after


def _out(services: Services, subscriptions: list[Subscription]) -> list[SubscriptionOut]:
    names = {s.id: subscription_cursor(s.id) for s in subscriptions}
    with services.engine.connect() as conn:
        states = cursor_states(conn, names.values())
    head = services.identity.head_position()
    return [_present(s, states.get(names[s.id]), head) for s in subscriptions]


def _present(subscription: Subscription, cursor: CursorState | None, head: int) -> SubscriptionOut:
    if cursor is None:  # not picked up by a deliverer yet
        cursor = CursorState(subscription_cursor(subscription.id), subscription.from_position - 1)
    return SubscriptionOut(
        id=subscription.id,
        url=subscription.url,
        filter=SubscriptionFilterOut(subscription.actions, subscription.resource_types),
        description=subscription.description,
        from_position=subscription.from_position,
        state=subscription.state,  # type: ignore[arg-type]
        created_at=subscription.created_on,
        updated_at=subscription.modified_on,
        delivered_through=cursor.delivered_through,
        lag=cursor.lag(head),
        delivered=cursor.delivered,
        failed=cursor.failed,
        last_error=cursor.last_error,
        last_attempt_at=cursor.last_attempt_at,
        last_delivered_at=cursor.last_delivered_at,
        version=subscription.version,
    )
