"""The ApiKey aggregate: issue, describe, scope, expire, rotate with grace, revoke, usage."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from uuid import UUID

from domain.base import LedgerAggregate
from domain.errors import ApiKeyExpiredError, ApiKeyRevokedError, InvalidValueError
from domain.scopes import validate_permissions
from domain.values import PersonalData

MAX_GRACE_SECONDS = 7 * 24 * 3600


class ApiKey(LedgerAggregate):
    TOPIC = "ledgerline.ApiKey"

    class Event(LedgerAggregate.Event):
        pass

    class Issued(Event, LedgerAggregate.Created):
        TOPIC = "ledgerline.ApiKey.Issued"
        owner_id: UUID
        name: str
        description: str | None
        key_prefix: str
        digest: str
        permissions: dict[str, bool]
        expires_at: datetime | None

    Created = Issued

    class Renamed(Event):
        TOPIC = "ledgerline.ApiKey.Renamed"
        name: str

        def apply(self, key: ApiKey) -> None:
            key.name = self.name

    class Described(Event):
        TOPIC = "ledgerline.ApiKey.Described"
        description: str | None

        def apply(self, key: ApiKey) -> None:
            key.description = self.description

    class PermissionsChanged(Event):
        TOPIC = "ledgerline.ApiKey.PermissionsChanged"
        permissions: dict[str, bool]

        def apply(self, key: ApiKey) -> None:
            key.permissions = dict(self.permissions)

    class ExpiryChanged(Event):
        TOPIC = "ledgerline.ApiKey.ExpiryChanged"
        expires_at: datetime | None

        def apply(self, key: ApiKey) -> None:
            key.expires_at = self.expires_at

    class Rotated(Event):
        TOPIC = "ledgerline.ApiKey.Rotated"
        key_prefix: str
        digest: str
        grace_until: datetime | None  # the previous secret works until then (None: not at all)

        def apply(self, key: ApiKey) -> None:
            key.previous_digest = key.digest if self.grace_until else None
            key.key_prefix = self.key_prefix
            key.digest = self.digest
            key.grace_until = self.grace_until
            key.rotated_at = self.timestamp

    class Revoked(Event):
        TOPIC = "ledgerline.ApiKey.Revoked"
        reason: str | None

        def apply(self, key: ApiKey) -> None:
            key.revoked_at = self.timestamp
            key.revocation_reason = self.reason

    class UsageRecorded(Event):
        """A batch of uses counted in memory by an API process, flushed as one event."""

        TOPIC = "ledgerline.ApiKey.UsageRecorded"
        count: int
        last_used_at: datetime
        last_used_ip: PersonalData | None

        def apply(self, key: ApiKey) -> None:
            key.usage_count += self.count
            if key.last_used_at is None or self.last_used_at >= key.last_used_at:
                key.last_used_at = self.last_used_at
                key.last_used_ip = self.last_used_ip

    REDACTED = frozenset({"digest", "previous_digest"})

    owner_id: UUID | None = None
    name: str = ""
    description: str | None = None
    key_prefix: str = ""
    digest: str = ""
    permissions: dict[str, bool] | None = None
    expires_at: datetime | None = None
    previous_digest: str | None = None
    grace_until: datetime | None = None
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    usage_count: int = 0
    last_used_at: datetime | None = None
    last_used_ip: PersonalData | None = None

    @property
    def data_subject_id(self) -> UUID:
        return self.owner_id or self.id

    @classmethod
    def issue(
        cls,
        *,
        key_id: UUID,
        owner_id: UUID,
        owner_is_superuser: bool,
        name: str,
        description: str | None,
        key_prefix: str,
        digest: str,
        permissions: Mapping[str, bool],
        expires_at: datetime | None,
        now: datetime,
    ) -> ApiKey:
        _check_expiry(expires_at, now)
        return cls._create_with_audit(
            cls.Issued,
            id=key_id,
            audit_subject=owner_id,
            owner_id=owner_id,
            name=name,
            description=description,
            key_prefix=key_prefix,
            digest=digest,
            permissions=validate_permissions(permissions, owner_is_superuser=owner_is_superuser),
            expires_at=expires_at,
        )

    # ---- state ----------------------------------------------------------------------------

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def is_active(self, now: datetime) -> bool:
        return not self.is_revoked and not self.is_expired(now)

    def accepts(self, digest: str, now: datetime) -> bool:
        """Whether a presented key with this digest authenticates as this key now."""
        if not self.is_active(now):
            return False
        if hmac.compare_digest(self.digest, digest):
            return True
        in_grace = self.grace_until is not None and now < self.grace_until
        return in_grace and hmac.compare_digest(self.previous_digest or "", digest)

    def _check_changeable(self, now: datetime) -> None:
        if self.is_revoked:
            raise ApiKeyRevokedError(self.id)
        if self.is_expired(now):
            raise ApiKeyExpiredError(self.id)

    # ---- commands -------------------------------------------------------------------------

    def rename(self, name: str, now: datetime) -> None:
        self._check_changeable(now)
        if name != self.name:
            self.trigger_event(self.Renamed, name=name)

    def describe(self, description: str | None, now: datetime) -> None:
        self._check_changeable(now)
        if description != self.description:
            self.trigger_event(self.Described, description=description)

    def change_permissions(
        self, permissions: Mapping[str, bool], *, owner_is_superuser: bool, now: datetime
    ) -> None:
        self._check_changeable(now)
        checked = validate_permissions(permissions, owner_is_superuser=owner_is_superuser)
        if checked != self.permissions:
            self.trigger_event(self.PermissionsChanged, permissions=checked)

    def change_expiry(self, expires_at: datetime | None, now: datetime) -> None:
        if self.is_revoked:
            raise ApiKeyRevokedError(self.id)
        _check_expiry(expires_at, now)
        if expires_at != self.expires_at:
            self.trigger_event(self.ExpiryChanged, expires_at=expires_at)

    def rotate(self, *, key_prefix: str, digest: str, grace_seconds: int, now: datetime) -> None:
        self._check_changeable(now)
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise InvalidValueError("grace_seconds", f"must be between 0 and {MAX_GRACE_SECONDS}")
        grace_until = now + timedelta(seconds=grace_seconds) if grace_seconds else None
        self.trigger_event(
            self.Rotated,
            key_prefix=key_prefix,
            digest=digest,
            grace_until=grace_until,
        )

    def revoke(self, reason: str | None = None) -> None:
        if self.is_revoked:
            raise ApiKeyRevokedError(self.id)
        self.trigger_event(self.Revoked, reason=reason)

    def record_usage(self, *, count: int, last_used_at: datetime, last_used_ip: str | None) -> None:
        if count < 1:
            raise InvalidValueError("count", "a usage batch counts at least one use")
        ip = None if last_used_ip is None else PersonalData(self.data_subject_id, last_used_ip)
        self.trigger_event(self.UsageRecorded, count=count, last_used_at=last_used_at, last_used_ip=ip)


def _check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        raise InvalidValueError("expires_at", "must be in the future")
