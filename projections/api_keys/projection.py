"""API keys: one row per key, folded from the ApiKey events. Pure transformation per event."""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch
from typing import Any

from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection

from domain.api_keys import ApiKey
from projections.api_keys.tables import define_api_keys
from projections.base import Positioned, ProjectionContext
from projections.events import topics_of
from projections.rows import Row, fold_and_upsert


class ApiKeysProjection:
    name = "api_keys"
    shape = 1
    topics = topics_of(ApiKey)
    reads_stored = False

    def __init__(self, context: ProjectionContext) -> None:
        self.context = context

    def define_tables(self, metadata: MetaData, generation: int) -> list[Table]:
        return [define_api_keys(metadata, generation)]

    def apply(self, conn: Connection, tables: Sequence[Table], events: Sequence[Positioned]) -> None:
        fold_and_upsert(conn, tables[0], events, self.evolve)

    def evolve(self, row: Row | None, item: Positioned) -> Row | None:
        event = item.event
        if row is None and not isinstance(event, ApiKey.Issued):
            return None
        updated = {**(row or {}), **_changes(event, row or {}, self.context)}
        updated.update(updated_at=event.timestamp, version=event.originator_version, position=item.position)
        return updated


@singledispatch
def _changes(event: Any, row: Row, context: ProjectionContext) -> Row:
    return {}


@_changes.register
def _(event: ApiKey.Issued, row: Row, context: ProjectionContext) -> Row:
    return {
        "id": event.originator_id,
        "user_id": event.owner_id,
        "name": event.name,
        "description": event.description,
        "key_prefix": event.key_prefix,
        "permissions": dict(event.permissions),
        "expires_at": event.expires_at,
        "created_at": event.timestamp,
        "last_used_at": None,
        "last_used_ip": None,
        "usage_count": 0,
        "revoked_at": None,
        "rotated_at": None,
        "grace_until": None,
    }


@_changes.register
def _(event: ApiKey.Renamed, row: Row, context: ProjectionContext) -> Row:
    return {"name": event.name}


@_changes.register
def _(event: ApiKey.Described, row: Row, context: ProjectionContext) -> Row:
    return {"description": event.description}


@_changes.register
def _(event: ApiKey.PermissionsChanged, row: Row, context: ProjectionContext) -> Row:
    return {"permissions": dict(event.permissions)}


@_changes.register
def _(event: ApiKey.ExpiryChanged, row: Row, context: ProjectionContext) -> Row:
    return {"expires_at": event.expires_at}


@_changes.register
def _(event: ApiKey.Rotated, row: Row, context: ProjectionContext) -> Row:
    return {"key_prefix": event.key_prefix, "rotated_at": event.timestamp, "grace_until": event.grace_until}


@_changes.register
def _(event: ApiKey.Revoked, row: Row, context: ProjectionContext) -> Row:
    return {"revoked_at": event.timestamp}


@_changes.register
def _(event: ApiKey.UsageRecorded, row: Row, context: ProjectionContext) -> Row:
    changes: Row = {"usage_count": row.get("usage_count", 0) + event.count}
    if row.get("last_used_at") is None or event.last_used_at >= row["last_used_at"]:
        changes.update(last_used_at=event.last_used_at, last_used_ip=context.sealer.seal(event.last_used_ip))
    return changes
