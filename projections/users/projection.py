"""Users: one row per user, folded from the User events. Pure transformation per event."""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch
from typing import Any

from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection

from domain.users import User
from domain.values import ERASED
from projections.base import Positioned, ProjectionContext
from projections.events import topics_of
from projections.rows import Row, fold_and_upsert
from projections.users.tables import define_users


class UsersProjection:
    name = "users"
    shape = 1
    topics = topics_of(User)
    reads_stored = False

    def __init__(self, context: ProjectionContext) -> None:
        self.context = context

    def define_tables(self, metadata: MetaData, generation: int) -> list[Table]:
        return [define_users(metadata, generation)]

    def apply(self, conn: Connection, tables: Sequence[Table], events: Sequence[Positioned]) -> None:
        fold_and_upsert(conn, tables[0], events, self.evolve)

    def evolve(self, row: Row | None, item: Positioned) -> Row | None:
        event = item.event
        if row is None and not isinstance(event, User.Registered):
            return None  # cannot happen in a consistent log; never invent a row
        changes = _changes(event, row or {}, self.context)
        updated = {**(row or {}), **changes}
        updated.update(updated_at=event.timestamp, version=event.originator_version, position=item.position)
        return updated


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


@singledispatch
def _changes(event: Any, row: Row, context: ProjectionContext) -> Row:
    return {}  # events that change nothing shown here (e.g. a password change)


@_changes.register
def _(event: User.Registered, row: Row, context: ProjectionContext) -> Row:
    full_name = event.full_name.value if event.full_name else None
    return {
        "id": event.originator_id,
        "username": event.username,
        "username_folded": event.username.casefold(),
        "email": event.email.value,
        "full_name": full_name,
        "full_name_folded": _fold(full_name),
        "is_active": True,
        "is_superuser": event.is_superuser,
        "is_verified": False,
        "verified_at": None,
        "failed_login_count": 0,
        "locked_until": None,
        "created_at": event.timestamp,
        "last_login_at": None,
        "last_login_ip": None,
        "deleted_at": None,
        "erased_at": None,
    }


@_changes.register
def _(event: User.ProfileUpdated, row: Row, context: ProjectionContext) -> Row:
    full_name = event.full_name.value if event.full_name else None
    return {"full_name": full_name, "full_name_folded": _fold(full_name)}


@_changes.register
def _(event: User.EmailChanged, row: Row, context: ProjectionContext) -> Row:
    return {"email": event.email.value, "is_verified": False, "verified_at": None}


@_changes.register
def _(event: User.Verified, row: Row, context: ProjectionContext) -> Row:
    return {"is_verified": True, "verified_at": event.timestamp}


@_changes.register
def _(event: User.Activated, row: Row, context: ProjectionContext) -> Row:
    return {"is_active": True}


@_changes.register
def _(event: User.Deactivated, row: Row, context: ProjectionContext) -> Row:
    return {"is_active": False}


@_changes.register
def _(event: User.LoggedIn, row: Row, context: ProjectionContext) -> Row:
    return {
        "last_login_at": event.timestamp,
        "last_login_ip": context.sealer.seal(event.audit.ip_address),
        "failed_login_count": 0,
        "locked_until": None,
    }


@_changes.register
def _(event: User.LoginFailed, row: Row, context: ProjectionContext) -> Row:
    return {"failed_login_count": event.failed_login_count}


@_changes.register
def _(event: User.Locked, row: Row, context: ProjectionContext) -> Row:
    return {"locked_until": event.locked_until, "failed_login_count": 0}


@_changes.register
def _(event: User.Unlocked, row: Row, context: ProjectionContext) -> Row:
    return {"locked_until": None, "failed_login_count": 0}


@_changes.register
def _(event: User.SuperuserGranted, row: Row, context: ProjectionContext) -> Row:
    return {"is_superuser": True}


@_changes.register
def _(event: User.SuperuserRevoked, row: Row, context: ProjectionContext) -> Row:
    return {"is_superuser": False}


@_changes.register
def _(event: User.Deleted, row: Row, context: ProjectionContext) -> Row:
    return {"deleted_at": event.timestamp}


@_changes.register
def _(event: User.Restored, row: Row, context: ProjectionContext) -> Row:
    return {"deleted_at": None}


@_changes.register
def _(event: User.Erased, row: Row, context: ProjectionContext) -> Row:
    # The read table keeps no copy: searchable plain fields are overwritten here.
    return {
        "email": ERASED,
        "full_name": ERASED,
        "full_name_folded": ERASED,
        "erased_at": event.timestamp,
        "deleted_at": row.get("deleted_at") or event.timestamp,
        "is_active": False,
    }
