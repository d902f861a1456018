"""Request shapes: each constraint declared once, as an ``Annotated`` alias.

Anything a request body holds must fit every store and every projection, so that an accepted
event can always be stored and projected (PostgreSQL text refuses NUL; JSON text cannot carry
unpaired surrogates; the read tables keep times in UTC and case-folded copies of some text).
What ``msgspec.Meta`` can declare it declares (and the OpenAPI document shows); the rest are
``Check`` markers in the same ``Annotated`` alias, applied by ``Body.__post_init__``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args, get_type_hints
from uuid import UUID

import msgspec

from domain.password_policy import MAX_LENGTH, MIN_LENGTH

T = TypeVar("T")

# Patterns must mean the same to Python's `re` (msgspec) and to JSON Schema (ECMA 262): in
# Python `$` also matches before a final newline, so every pattern ends with END; lookaheads
# use [\s\S] so they see past a newline too.
END = r"$(?!\n)"
STORABLE = r"^[^\x00]*" + END  # any text a store can hold: no NUL
UNPAIRED_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Display text, the one rule of every field people read (full name, key name, description): no
# C0 or C1 control, no DEL, no markup (< >), no bidi embedding, override or isolate (they reorder
# what follows on screen: "gpj.exe" shows as "exe.jpg") and no zero-width no-break space (BOM).
NOT_DISPLAYED = r"<>\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff"
DISPLAY_TEXT = rf"[^{NOT_DISPLAYED}]"
DISPLAY_RULE = "no control characters, markup (< >), bidi controls or zero-width no-break spaces"
# Script and markup in a name: tags, script URL schemes and inline event handlers.
NO_SCRIPT = (
    r"(?![\s\S]*(?:[jJ][aA][vV][aA]|[vV][bB])[sS][cC][rR][iI][pP][tT] *:)"
    r"(?![\s\S]*[dD][aA][tT][aA] *:)"
    r"(?![\s\S]*[oO][nN][A-Za-z]+ *=)"
)


@dataclass(frozen=True)
class Check:
    """A rule ``msgspec.Meta`` cannot declare, put beside it in an ``Annotated`` alias."""

    holds: Callable[[Any], bool]
    message: str


def storable_text(text: str) -> bool:
    """No NUL (PostgreSQL text refuses it) and valid Unicode (no unpaired surrogate)."""
    return "\x00" not in text and UNPAIRED_SURROGATE.search(text) is None


def in_utc(moment: datetime) -> datetime | None:
    """The moment in UTC, or None when UTC cannot represent it (9999-12-31T23:59-14:00)."""
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def folds_within(limit: int) -> Check:
    """For text the read side also keeps case-folded ("ﬃ" folds to "ffi")."""
    return Check(lambda text: len(text.casefold()) <= limit, f"at most {limit} characters when case-folded")


IN_UTC = Check(lambda moment: in_utc(moment) is not None, "must lie within years 1..9999 in UTC")


class Body(msgspec.Struct, forbid_unknown_fields=True):
    """A request body. Every text in it must be storable, and each field's ``Check`` markers
    must hold; a failure is a ``msgspec.ValidationError`` naming the field (a 422)."""

    def __post_init__(self) -> None:
        for name, checks in _checks_of(type(self)):
            value = getattr(self, name)
            if value is None or value is msgspec.UNSET:
                continue
            if not all(storable_text(text) for text in _texts(value)):
                raise msgspec.ValidationError(f"must not contain NUL or unpaired surrogates - at `$.{name}`")
            for check in checks:
                if not check.holds(value):
                    raise msgspec.ValidationError(f"{check.message} - at `$.{name}`")


@cache
def _checks_of(kind: type[Body]) -> tuple[tuple[str, tuple[Check, ...]], ...]:
    hints = get_type_hints(kind, include_extras=True)
    return tuple((name, tuple(_markers(hints[name]))) for name in kind.__struct_fields__)


def _markers(annotation: Any) -> Iterator[Check]:
    for part in (annotation, *get_args(annotation)):
        if isinstance(part, Check):
            yield part
        elif part is not annotation:
            yield from _markers(part)


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


Username = Annotated[str, msgspec.Meta(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9_-]+" + END)]
# A dot-atom local part (no leading, trailing or doubled dot) at a host name.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254,
        pattern=rf"^{ATEXT}+(?:\.{ATEXT}+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+" + END,
    ),
]
# The length is declared here too, and the composition shown as a pattern in the schemas (msgspec's
# and, through "extra", the OpenAPI document's) so generated clients and fuzzers send what passes;
# neither is checked here: every rule, with a message of its own (never a pattern), is
# ``domain.password_policy``, applied by the commands that set a password. NUL: ``Body``.
COMPOSITION = r"^(?=[\s\S]*[a-z])(?=[\s\S]*[A-Z])(?=[\s\S]*[0-9])(?=[\s\S]*[^A-Za-z0-9])[^\x00]*" + END
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        extra_json_schema={"pattern": COMPOSITION, "extra": {"pattern": COMPOSITION}},  # shown, not checked
        description=f"{MIN_LENGTH}..{MAX_LENGTH} characters with a lower-case letter, an upper-case letter, "
        "a digit and a character that is neither; not a commonly used password; not containing "
        "the username, the e-mail address's local part or the full name",
    ),
]
FullName = Annotated[
    str,
    msgspec.Meta(
        max_length=255,
        pattern=r"^" + NO_SCRIPT + DISPLAY_TEXT + "*" + END,
        description=f"at most 255 characters, also when case-folded; {DISPLAY_RULE}; "
        "no script URLs (javascript:, vbscript:, data:) or event handlers (on...=)",
    ),
    folds_within(255),  # the users view keeps a case-folded copy in varchar(255)
]


class RegisterUser(Body):
    username: Username
    email: Email
    password: Password
    full_name: FullName | None = None


class Health(msgspec.Struct):
    status: str
    version: str


# ---- requests ---------------------------------------------------------------------------------

Scope = Annotated[str, msgspec.Meta(max_length=64, pattern=STORABLE)]
KeyName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=100, pattern=f"^{DISPLAY_TEXT}+{END}", description=DISPLAY_RULE),
]
Description = Annotated[  # display text over several lines: line breaks (\n, \r\n) are kept
    str,
    msgspec.Meta(
        max_length=500,
        pattern=rf"^(?:{DISPLAY_TEXT}|\r?\n)*{END}",
        description=f"{DISPLAY_RULE}; may span lines",
    ),
]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=604800)]
PerPage = Annotated[int, msgspec.Meta(ge=1, le=100)]
AwareDatetime = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 with a UTC offset, within years 1..9999 in UTC"),
    IN_UTC,
]
Page = Annotated[int, msgspec.Meta(ge=1)]


class CreateUser(RegisterUser):
    is_superuser: bool = False


class Login(Body):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=254, pattern=STORABLE)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=STORABLE)]


class UpdateMe(Body):
    email: Email | msgspec.UnsetType = msgspec.UNSET
    full_name: FullName | msgspec.UnsetType | None = msgspec.UNSET
    # Privileged fields are named so that sending them is a 403, not an "unknown field" 422.
    is_superuser: bool | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET
    is_verified: bool | msgspec.UnsetType = msgspec.UNSET


class Refresh(Body):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=STORABLE)]


class ChangePassword(Body):
    current_password: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=STORABLE)]
    new_password: Password


class CreateApiKey(Body):
    name: KeyName
    permissions: dict[Scope, bool]
    description: Description | None = None
    expires_at: AwareDatetime | None = None


class UpdateApiKey(Body):
    name: KeyName | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    permissions: dict[Scope, bool] | msgspec.UnsetType = msgspec.UNSET
    expires_at: AwareDatetime | msgspec.UnsetType | None = msgspec.UNSET


class RotateApiKey(Body):
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


class HistoryActor(msgspec.Struct):
    id: UUID | None
    type: str
    credential_id: UUID | None


class Change(msgspec.Struct):
    before: Any
    after: Any


class HistoryEntry(msgspec.Struct):
    """One event of a resource's history: what it changed (secrets "[REDACTED]")."""

    position: int | None  # in the audit log; None until projected
    version: int
    action: str
    occurred_at: datetime
    actor: HistoryActor
    changes: dict[str, Change]


class Status(msgspec.Struct):
    status: str


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


# ---- readiness (GET /ready: its dict body, documented) ---------------------------------------


class ProjectionFailure(msgspec.Struct):
    position: int
    error_type: str
    sqlstate: str | None
    attempts: int
    first_failed_at: datetime
    last_attempt_at: datetime


class ReadinessCheck(msgspec.Struct):
    name: str
    ok: bool
    position: int | msgspec.UnsetType = msgspec.UNSET
    lag: int | msgspec.UnsetType = msgspec.UNSET
    lag_seconds: float | msgspec.UnsetType = msgspec.UNSET
    state: str | msgspec.UnsetType = msgspec.UNSET
    reason: str | msgspec.UnsetType = msgspec.UNSET
    error: str | msgspec.UnsetType = msgspec.UNSET
    failure: ProjectionFailure | msgspec.UnsetType = msgspec.UNSET
    detail: str | msgspec.UnsetType = msgspec.UNSET


class ReadinessChecks(msgspec.Struct):
    event_store: ReadinessCheck
    projections: list[ReadinessCheck]
    audit_chain: ReadinessCheck | None


class Readiness(msgspec.Struct):
    status: Literal["ok", "unavailable"]
    checks: ReadinessChecks
    failed: list[ReadinessCheck]
