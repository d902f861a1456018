"""/api-keys: a caller manages their own keys; admins anyone's (``api.authorization`` decides
who reaches which key; the commands refuse keys stronger than the credential in hand)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter

from api.authorization import authorize, credential_of, decided_owner
from api.controllers.responses import Cursor, IfMatch, MinPosition, PageNumber, PerPage, if_match, written
from api.history import history
from api.key_schemas import KeyVerification, RevokeApiKey, VerifyApiKey
from api.key_verification import verify_key
from api.presenters import api_key_from_aggregate, api_key_from_row, api_key_out
from api.schemas import (
    ApiKeyOut,
    CreateApiKey,
    HistoryEntry,
    Many,
    NewApiKeyOut,
    One,
    RotateApiKey,
    UpdateApiKey,
    UsageStats,
)
from api.security import Principal
from api.services import Services, decode_cursor, page_info
from eventstore.identity import UNCHANGED, IssuedKey
from projections.api_keys.queries import list_api_keys, usage_stats


class ApiKeysController(Controller):
    path = "/api/v1/api-keys"
    tags = ["api-keys"]
    guards = [authorize]
    dependencies = {"owner": Provide(decided_owner, sync_to_thread=False)}

    @post("/", sync_to_thread=True, status_code=201)
    def create_api_key(
        self, data: CreateApiKey, services: Services, principal: Principal
    ) -> Response[One[NewApiKeyOut]]:
        """Create an API key for the caller (never granting more than the credential in hand);
        its secret is in the answer, once."""
        issued = services.identity.issue_api_key(
            principal.user_id,
            name=data.name,
            permissions=data.permissions,
            description=data.description,
            expires_at=data.expires_at,
            credential=credential_of(principal),
        )
        return written(
            _new_key(issued), issued.result, status=201, location=f"{self.path}/{issued.result.id}"
        )

    @get("/", sync_to_thread=True)
    def list_api_keys(
        self,
        services: Services,
        owner: UUID,
        user_id: Annotated[
            UUID | None, Parameter(description="whose keys (at most once; absent: the caller's)")
        ] = None,
        include_revoked: bool = False,
        include_expired: bool = False,
        page: PageNumber = 1,
        per_page: PerPage = 20,
        sort_by: Literal["created_at", "name"] = "created_at",
        sort_order: Literal["asc", "desc"] = "asc",
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Many[ApiKeyOut]:
        """List the caller's keys, or (admins) another user's with ``user_id``."""
        del user_id  # documented and validated here; whose keys is ``owner``, decided by the guard
        services.read_side_at(min_position)
        after = None if cursor is None else decode_cursor(cursor, is_time=sort_by == "created_at")
        with services.engine.connect() as conn:
            rows, total = list_api_keys(
                conn,
                owner,
                now=datetime.now(UTC),
                include_revoked=include_revoked,
                include_expired=include_expired,
                sort_by=sort_by,
                descending=sort_order == "desc",
                page=page,
                per_page=per_page,
                after=after,
            )
        return Many(
            data=[api_key_from_row(row, services.sealer) for row in rows],
            pagination=page_info(rows, total, page=page, per_page=per_page, after=after),
        )

    @get("/usage-stats", sync_to_thread=True)
    def api_key_usage_stats(
        self,
        services: Services,
        principal: Principal,
        owner: UUID,
        user_id: Annotated[
            UUID | None,
            Parameter(
                description="whose keys (admins; absent: an admin's are everyone's, a user's their own)"
            ),
        ] = None,
        min_position: MinPosition = None,
    ) -> One[UsageStats]:
        """Usage of the caller's own keys; an admin's: everyone's, or ``user_id``'s. Appended by
        the flusher (no caller's own write): as of the head."""
        everyone = principal.is_superuser and user_id is None  # who may see whose: the guard
        services.read_side_at(min_position, everyone=True)
        with services.engine.connect() as conn:
            stats = usage_stats(conn, datetime.now(UTC), owner_id=None if everyone else owner)
        return One(data=UsageStats(**stats))

    @post(
        "/verify",
        sync_to_thread=True,
        status_code=200,
        opt={"query": True, "problems": {429: "Too many verifications from this caller (Retry-After)"}},
    )
    def verify_api_key(
        self, data: VerifyApiKey, services: Services, principal: Principal
    ) -> One[KeyVerification]:
        """Whether a key another service received is good now, and if not why (a use of it)."""
        return One(data=verify_key(services, principal, data.key))

    @get("/{key_id:uuid}", sync_to_thread=True)
    def get_api_key(
        self, key_id: UUID, services: Services, min_position: MinPosition = None
    ) -> One[ApiKeyOut]:
        """One key (never its secret)."""
        services.store_at(min_position)
        return One(data=api_key_out(services.identity.get_api_key(key_id)))

    @get("/{key_id:uuid}/history", sync_to_thread=True)
    def api_key_history(
        self, key_id: UUID, services: Services, min_position: MinPosition = None
    ) -> One[list[HistoryEntry]]:
        """The key's events in order, replayed from the event store; digests redacted."""
        return One(data=history(services, key_id, api_key_from_aggregate, min_position))

    @patch("/{key_id:uuid}", sync_to_thread=True)
    def update_api_key(
        self,
        key_id: UUID,
        data: UpdateApiKey,
        services: Services,
        principal: Principal,
        if_match_header: IfMatch = None,
    ) -> Response[One[ApiKeyOut]]:
        """Change a key's name, description, scopes or expiry (If-Match optional)."""
        result = services.identity.update_api_key(
            key_id,
            name=UNCHANGED if data.name is msgspec.UNSET else data.name,
            description=UNCHANGED if data.description is msgspec.UNSET else data.description,
            permissions=UNCHANGED if data.permissions is msgspec.UNSET else data.permissions,
            expires_at=UNCHANGED if data.expires_at is msgspec.UNSET else data.expires_at,
            expected_version=if_match(if_match_header),
            credential=credential_of(principal),
        )
        return written(api_key_out(result.aggregate), result)

    @post("/{key_id:uuid}/rotate", sync_to_thread=True, status_code=200)
    def rotate_api_key(
        self, key_id: UUID, services: Services, principal: Principal, data: RotateApiKey | None = None
    ) -> Response[One[NewApiKeyOut]]:
        """A new secret for the key (shown once); the old one keeps working for ``grace_seconds``."""
        issued = services.identity.rotate_api_key(
            key_id, grace_seconds=(data or RotateApiKey()).grace_seconds, credential=credential_of(principal)
        )
        return written(_new_key(issued), issued.result)

    @post("/{key_id:uuid}/revoke", sync_to_thread=True, status_code=200)
    def revoke_api_key(
        self, key_id: UUID, services: Services, data: RevokeApiKey | None = None
    ) -> Response[One[ApiKeyOut]]:
        """Revoke a key: it stops working at once; an optional reason is kept in the audit entry."""
        reason = (data or RevokeApiKey()).reason or "revoked through the API"
        result = services.identity.revoke_api_key(key_id, reason=reason)
        return written(api_key_out(result.aggregate), result)

    @delete("/{key_id:uuid}", sync_to_thread=True, status_code=200)
    def delete_api_key(self, key_id: UUID, services: Services) -> Response[One[ApiKeyOut]]:
        """Revokes a live key; a key already revoked is left as it is (200, nothing written)."""
        result = services.identity.revoke_api_key(
            key_id, reason="deleted through the API", already_revoked_is_fine=True
        )
        return written(api_key_out(result.aggregate), result)


def _new_key(issued: IssuedKey) -> NewApiKeyOut:
    """The key as the command saved it, with its secret: shown this once."""
    return NewApiKeyOut(**api_key_from_aggregate(issued.result.aggregate), key=issued.key)
