"""Request and response shapes of key verification and revocation reasons (decision 0017)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from api.schemas import DISPLAY_RULE, DISPLAY_TEXT, END, Body

MAX_REASON = 200
Reason = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_REASON,
        pattern=f"^{DISPLAY_TEXT}+{END}",
        description=f"why (kept in the audit log): 1..{MAX_REASON} characters on one line; {DISPLAY_RULE}",
    ),
]
KeyCodeName = Literal["VALID", "NOT_FOUND", "REVOKED", "EXPIRED", "OWNER_DISABLED"]


class RevokeApiKey(Body):
    reason: Reason | None = None


class VerifyApiKey(Body):
    key: Annotated[
        str, msgspec.Meta(description="the key a caller presented (any text: malformed is NOT_FOUND)")
    ]


class KeyVerification(msgspec.Struct):
    """``key_id`` and ``user_id`` for a key that exists (every code but NOT_FOUND); ``permissions``
    and ``expires_at`` (null: never) only when ``valid``."""

    valid: bool
    code: KeyCodeName
    key_id: UUID | msgspec.UnsetType = msgspec.UNSET
    user_id: UUID | msgspec.UnsetType = msgspec.UNSET
    permissions: dict[str, bool] | msgspec.UnsetType = msgspec.UNSET
    expires_at: datetime | msgspec.UnsetType | None = msgspec.UNSET
