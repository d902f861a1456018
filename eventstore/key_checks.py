"""Checking a key for another service (``POST /api-keys/verify``): is this key good now, and if
not, why? Unlike authentication, the answer names the reason: the caller is an admin's service,
entitled to know whether a key its own caller presented was revoked, expired or disabled.

Every well-formed key costs the same work whatever it turns out to be: one SHA-256 of the whole
key, one lookup of that digest (nothing of the secret is compared byte by byte outside
``hmac.compare_digest``), so the time taken says nothing about how close a guess came. A
malformed key (wrong shape or checksum) is refused before any lookup: whether a string is
well-formed is no secret, anyone can compute it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.api_keys import ApiKey
from domain.errors import NotFoundError, StateConflictError
from domain.scopes import role_allows
from eventstore.api_key_tokens import digest_of, is_well_formed
from eventstore.identity_base import IdentityBase


class KeyCode(StrEnum):
    VALID = "VALID"
    NOT_FOUND = "NOT_FOUND"  # unknown or malformed
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"  # the key's expiry, or a rotated-out secret (its grace over)
    OWNER_DISABLED = "OWNER_DISABLED"  # the owner is deactivated, deleted or erased


@dataclass(frozen=True)
class KeyCheck:
    code: KeyCode
    key_id: UUID | None = None  # known keys only (not NOT_FOUND)
    user_id: UUID | None = None
    permissions: dict[str, bool] | None = None  # VALID only: what the key grants now
    expires_at: datetime | None = None  # VALID only: when this secret stops working (None: never)

    @property
    def valid(self) -> bool:
        return self.code is KeyCode.VALID


NOT_FOUND = KeyCheck(KeyCode.NOT_FOUND)


class KeyChecks(IdentityBase):
    def check_api_key(self, key: str, *, now: datetime) -> KeyCheck:
        if not is_well_formed(key):
            return NOT_FOUND
        digest = digest_of(key)
        key_id = self._holder("api_key_digest", digest)
        if key_id is None:
            return NOT_FOUND
        try:
            api_key = self.get_api_key(key_id)
        except NotFoundError:
            return NOT_FOUND
        assert api_key.owner_id is not None
        key_id, owner_id = api_key.id, api_key.owner_id
        if api_key.is_revoked:
            return KeyCheck(KeyCode.REVOKED, key_id, owner_id)
        current = hmac.compare_digest(api_key.digest, digest)
        if api_key.is_expired(now) or not _is_live_secret(api_key, current, digest, now):
            return KeyCheck(KeyCode.EXPIRED, key_id, owner_id)
        owner_grants = self._owner_grants(owner_id)
        if owner_grants is None:
            return KeyCheck(KeyCode.OWNER_DISABLED, key_id, owner_id)
        permissions = {
            scope: True
            for scope, allowed in sorted((api_key.permissions or {}).items())
            if allowed and role_allows(scope, is_superuser=owner_grants)
        }
        return KeyCheck(KeyCode.VALID, key_id, owner_id, permissions, _ends(api_key, current))

    def _owner_grants(self, owner_id: UUID) -> bool | None:
        """Whether the owner is a superuser (what their keys may grant), or None when they can
        use no key at all (deactivated, deleted or erased)."""
        try:
            owner = self.get_user(owner_id)
            owner.check_live()
        except (NotFoundError, StateConflictError):
            return None
        return owner.is_superuser if owner.is_active else None


def _is_live_secret(api_key: ApiKey, current: bool, digest: str, now: datetime) -> bool:
    """The key's current secret, or its previous one during a rotation's grace."""
    if current:
        return True
    in_grace = api_key.grace_until is not None and now < api_key.grace_until
    return hmac.compare_digest(api_key.previous_digest or "", digest) and in_grace


def _ends(api_key: ApiKey, current: bool) -> datetime | None:
    """When this secret stops working: the key's expiry, and a previous secret's grace."""
    grace = None if current else api_key.grace_until
    return min((end for end in (api_key.expires_at, grace) if end is not None), default=None)
