"""/users: commands go to the Identity application, lists to the users read table."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import Parameter

from api.authorization import authorize, check_may_make_superuser, refuse_privileged_fields
from api.controllers.responses import (
    Cursor,
    IfMatch,
    MinPosition,
    PageNumber,
    PerPage,
    QueryTime,
    if_match,
    written,
)
from api.history import history
from api.presenters import user_from_aggregate, user_from_row
from api.schemas import STORABLE, ChangePassword, CreateUser, HistoryEntry, Many, One, UpdateMe, UserOut
from api.security import Principal
from api.services import Services, aware, decode_cursor, page_info
from domain.errors import UserNotFoundError
from domain.users import User
from eventstore.identity import UNCHANGED, CommandResult
from projections.users.queries import UserFilters
from projections.users.queries import list_users as query_users


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    guards = [authorize]

    @post("/", status_code=201)
    async def create_user(
        self, data: CreateUser, services: Services, principal: Principal
    ) -> Response[One[UserOut]]:
        """Create a user (admins; making a superuser needs a credential that grants everything)."""
        if data.is_superuser:
            check_may_make_superuser(principal)
        return await services.with_password(_create_user, services, data, self.path)

    @get("/", sync_to_thread=True)
    def list_users(
        self,
        services: Services,
        search: Annotated[str | None, Parameter(max_length=100, pattern=STORABLE)] = None,
        is_active: bool | None = None,
        is_verified: bool | None = None,
        is_superuser: bool | None = None,
        created_after: QueryTime = None,
        created_before: QueryTime = None,
        include_deleted: bool = False,
        page: PageNumber = 1,
        per_page: PerPage = 20,
        sort_by: Literal["username", "email", "created_at", "last_login_at"] = "created_at",
        sort_order: Literal["asc", "desc"] = "asc",
        cursor: Cursor = None,
        min_position: MinPosition = None,
    ) -> Many[UserOut]:
        """List users (admins): filters, sorting, page or cursor pagination."""
        services.read_side_at(min_position)
        filters = UserFilters(
            search,
            is_active,
            is_verified,
            is_superuser,
            aware("created_after", created_after),
            aware("created_before", created_before),
            include_deleted,
        )
        after = (
            None
            if cursor is None
            else decode_cursor(cursor, is_time=sort_by in ("created_at", "last_login_at"))
        )
        with services.engine.connect() as conn:
            rows, total = query_users(
                conn,
                filters,
                sort_by=sort_by,
                descending=sort_order == "desc",
                page=page,
                per_page=per_page,
                after=after,
            )
        return Many(
            data=[user_from_row(row, services.sealer) for row in rows],
            pagination=page_info(rows, total, page=page, per_page=per_page, after=after),
        )

    @get("/me")
    async def get_me(
        self, services: Services, principal: Principal, min_position: MinPosition = None
    ) -> One[UserOut]:
        """From memory when the process holds the caller's current state (it usually does)."""
        if min_position is not None:
            await anyio.to_thread.run_sync(services.store_at, min_position)
        user = services.identity.cached_user(principal.user_id)
        if user is None:
            user = await anyio.to_thread.run_sync(services.identity.get_user, principal.user_id)
        return One(data=user_from_aggregate(user))

    @patch("/me", sync_to_thread=True)
    def update_me(
        self, data: UpdateMe, services: Services, principal: Principal, if_match_header: IfMatch = None
    ) -> Response[One[UserOut]]:
        """Change the caller's own profile (all given fields in one command; If-Match optional)."""
        return _update_user(services, principal, principal.user_id, data, if_match(if_match_header))

    @post("/me/change-password", status_code=200)
    async def change_my_password(
        self, data: ChangePassword, services: Services, principal: Principal
    ) -> Response[One[UserOut]]:
        """Change the caller's password (the current one is checked); it ends their other sessions."""
        return await services.with_password(_change_password, services, principal, data)

    @get("/by-username/{username:str}", sync_to_thread=True)
    def get_user_by_username(
        self, username: str, services: Services, min_position: MinPosition = None
    ) -> One[UserOut]:
        """Find a user by username (admins)."""
        services.store_at(min_position)
        user_id = services.identity.find_user_id(username) if "@" not in username else None
        user = None if user_id is None else services.identity.get_user(user_id)
        if user is None or user.is_deleted:
            raise UserNotFoundError(username)  # soft-deleted users are gone from reads
        return One(data=user_from_aggregate(user))

    @get("/{user_id:uuid}", sync_to_thread=True)
    def get_user(
        self,
        user_id: UUID,
        services: Services,
        principal: Principal,
        include_deleted: bool = False,
        version: Annotated[int | None, Parameter(ge=1)] = None,
        as_of: QueryTime = None,
        min_position: MinPosition = None,
    ) -> One[UserOut]:
        """The user now, or (``version``/``as_of``) as they were then, rebuilt from the events."""
        services.store_at(min_position)
        current = services.identity.get_user(user_id)
        if current.is_deleted and not (include_deleted and principal.is_superuser):
            raise UserNotFoundError(user_id)  # soft-deleted users are gone from reads
        moment = aware("as_of", as_of)
        if version is None and moment is None:
            return One(data=user_from_aggregate(current))
        then = services.identity.get_user_as_of(user_id, version=version, as_of=moment)
        return One(data=user_from_aggregate(then, now=moment))

    @get("/{user_id:uuid}/history", sync_to_thread=True)
    def user_history(
        self, user_id: UUID, services: Services, min_position: MinPosition = None
    ) -> One[list[HistoryEntry]]:
        """The user's events in order, replayed from the event store, secrets redacted."""
        services.store_at(min_position)
        services.identity.get_user(user_id)  # 404 for an unknown id
        return One(data=history(services, user_id, user_from_aggregate, min_position))

    @patch("/{user_id:uuid}", sync_to_thread=True)
    def update_user(
        self,
        user_id: UUID,
        data: UpdateMe,
        services: Services,
        principal: Principal,
        if_match_header: IfMatch = None,
    ) -> Response[One[UserOut]]:
        """Change a user's profile: the caller's own, or anyone's for an admin (If-Match optional)."""
        return _update_user(services, principal, user_id, data, if_match(if_match_header))

    @post("/{user_id:uuid}/verify", sync_to_thread=True, status_code=200)
    def verify_user(self, user_id: UUID, services: Services) -> Response[One[UserOut]]:
        """Mark a user's e-mail address as verified (admins)."""
        return _state_change(services.identity.verify_user(user_id))

    @post("/{user_id:uuid}/activate", sync_to_thread=True, status_code=200)
    def activate_user(self, user_id: UUID, services: Services) -> Response[One[UserOut]]:
        """Activate a deactivated user (admins)."""
        return _state_change(services.identity.activate_user(user_id))

    @post("/{user_id:uuid}/deactivate", sync_to_thread=True, status_code=200)
    def deactivate_user(self, user_id: UUID, services: Services) -> Response[One[UserOut]]:
        """Deactivate a user: their credentials stop working (admins)."""
        return _state_change(services.identity.deactivate_user(user_id))

    @post("/{user_id:uuid}/unlock", sync_to_thread=True, status_code=200)
    def unlock_user(self, user_id: UUID, services: Services) -> Response[One[UserOut]]:
        """Unlock a user locked out by failed logins (admins)."""
        return _state_change(services.identity.unlock_user(user_id))

    @delete("/{user_id:uuid}", sync_to_thread=True, status_code=200)
    def delete_user(self, user_id: UUID, services: Services) -> Response[One[UserOut]]:
        """Soft-delete a user: gone from reads, restorable (admins)."""
        return _state_change(services.identity.delete_user(user_id))

    @post("/{user_id:uuid}/restore", sync_to_thread=True, status_code=200)
    def restore_user(self, user_id: UUID, services: Services) -> Response[One[UserOut]]:
        """Restore a soft-deleted user (admins)."""
        return _state_change(services.identity.restore_user(user_id))

    @post("/{user_id:uuid}/erase", sync_to_thread=True, status_code=200)
    def erase_user(self, user_id: UUID, services: Services) -> Response[One[UserOut]]:
        """Erase a user's personal data for good (crypto-shredding; admins)."""
        return _state_change(services.identity.erase_user(user_id))


def _state_change(result: CommandResult[User]) -> Response[One[UserOut]]:
    return written(user_from_aggregate(result.aggregate), result)


def _update_user(
    services: Services, principal: Principal, user_id: UUID, data: UpdateMe, expected_version: int | None
) -> Response[One[UserOut]]:
    """One command for every field given: all of them are applied, or none."""
    refuse_privileged_fields(principal, data)
    result = services.identity.update_user(
        user_id,
        full_name=UNCHANGED if data.full_name is msgspec.UNSET else data.full_name,
        email=UNCHANGED if data.email is msgspec.UNSET else data.email,
        is_superuser=UNCHANGED if data.is_superuser is msgspec.UNSET else data.is_superuser,
        expected_version=expected_version,
    )
    return written(user_from_aggregate(result.aggregate), result)


def _create_user(services: Services, data: CreateUser, path: str) -> Response[One[UserOut]]:
    result = services.identity.register_user(
        username=data.username,
        email=data.email,
        password=data.password,
        full_name=data.full_name,
        is_superuser=data.is_superuser,
    )
    return written(user_from_aggregate(result.aggregate), result, status=201, location=f"{path}/{result.id}")


def _change_password(
    services: Services, principal: Principal, data: ChangePassword
) -> Response[One[UserOut]]:
    result = services.identity.change_password(
        principal.user_id, current_password=data.current_password, new_password=data.new_password
    )
    return written(user_from_aggregate(result.aggregate), result)
