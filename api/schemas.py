"""Request shapes: each constraint declared once, as an ``Annotated`` alias."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

import msgspec

T = TypeVar("T")

# Patterns must mean the same to Python's `re` (msgspec) and to JSON Schema (ECMA 262): in
# Python `$` also matches before a final newline, so every pattern ends with END; lookaheads
# use [\s\S] so they see past a newline too.
END = r"$(?!\n)"

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9_-]+" + END)]
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254,
        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+" + END,
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=128,
        pattern=r"^(?=[\s\S]*[a-z])(?=[\s\S]*[A-Z])(?=[\s\S]*[0-9])(?=[\s\S]*[^A-Za-z0-9])",
        description="8..128 characters with an upper-case letter, a lower-case letter, "
        "a digit and a special character",
    ),
]
FullName = Annotated[str, msgspec.Meta(max_length=255, pattern=r"^[^<>]*" + END)]


class RegisterUser(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    email: Email
    password: Password
    full_name: FullName | None = None


class Health(msgspec.Struct):
    status: str
    version: str


# ---- requests ---------------------------------------------------------------------------------

Scope = Annotated[str, msgspec.Meta(max_length=64)]
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^<>\x00-\x1f]+" + END)]
Description = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^<>]*" + END)]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=604800)]
PerPage = Annotated[int, msgspec.Meta(ge=1, le=100)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 with a UTC offset")]
Page = Annotated[int, msgspec.Meta(ge=1)]


class CreateUser(RegisterUser, forbid_unknown_fields=True):
    is_superuser: bool = False


class Login(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class UpdateMe(msgspec.Struct, forbid_unknown_fields=True):
    email: Email | msgspec.UnsetType = msgspec.UNSET
    full_name: FullName | msgspec.UnsetType | None = msgspec.UNSET
    # Privileged fields are named so that sending them is a 403, not an "unknown field" 422.
    is_superuser: bool | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET
    is_verified: bool | msgspec.UnsetType = msgspec.UNSET


class Refresh(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ChangePassword(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    new_password: Password


class CreateApiKey(msgspec.Struct, forbid_unknown_fields=True):
    name: KeyName
    permissions: dict[Scope, bool]
    description: Description | None = None
    expires_at: AwareDatetime | None = None


class UpdateApiKey(msgspec.Struct, forbid_unknown_fields=True):
    name: KeyName | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    permissions: dict[Scope, bool] | msgspec.UnsetType = msgspec.UNSET
    expires_at: AwareDatetime | msgspec.UnsetType | None = msgspec.UNSET


class RotateApiKey(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: GraceSeconds = 0


# ---- responses --------------------------------------------------------------------------------


class UserOut(msgspec.Struct):
    id: UUID
    username: str
    email: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    is_verified: bool
    verified_at: datetime | None
    is_locked: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    last_login_ip: str | None
    version: int


class ApiKeyOut(msgspec.Struct):
    id: UUID
    name: str
    description: str | None
    key_prefix: str
    permissions: dict[str, bool]
    expires_at: datetime | None
    user_id: UUID
    created_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    usage_count: int
    revoked_at: datetime | None
    rotated_at: datetime | None
    grace_until: datetime | None
    is_active: bool
    version: int


class NewApiKeyOut(ApiKeyOut):
    key: str
    warning: str = "Store this key now: it is shown only once."


class UsageStats(msgspec.Struct):
    total_keys: int
    active_keys: int
    expired_keys: int
    revoked_keys: int
    keys_used_today: int
    total_requests: int


class AuditEntryOut(msgspec.Struct):
    position: int
    occurred_at: datetime
    action: str
    resource_type: str
    resource_id: UUID
    resource_version: int
    actor_id: UUID | None
    actor_type: str
    credential_id: UUID | None
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    correlation_id: str | None
    status: str
    changes: dict[str, Any]
    hash: str | None  # the entry's seal in the audit chain (hex); None until sealed


class ActorCount(msgspec.Struct):
    actor_id: UUID
    count: int


class AuditStatistics(msgspec.Struct):
    total: int
    by_action: dict[str, int]
    by_resource_type: dict[str, int]
    by_status: dict[str, int]
    top_actors: list[ActorCount]


class TokenPair(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None


class Pagination(msgspec.Struct):
    page: int
    per_page: int
    total: int
    has_next: bool
    has_prev: bool
    next_cursor: str | None


class One(msgspec.Struct, Generic[T]):
    data: T


class Many(msgspec.Struct, Generic[T]):
    data: list[T]
    pagination: Pagination
