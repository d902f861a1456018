"""Use cases on API keys: issue, change, rotate, revoke, usage."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.api_keys import ApiKey
from domain.audit import AuditContext, acting_as
from domain.errors import ApiKeyNotFoundError
from domain.reservations import Reservation
from domain.scopes import Credential, check_within
from domain.users import User
from eventstore.api_key_tokens import generate_api_key
from eventstore.commands import UNCHANGED, CommandResult, IssuedKey, fresh_reads, utcnow, with_retries
from eventstore.identity_base import IdentityBase

USAGE_RECORDER = AuditContext(actor_type="system", request_id="usage-flush")


class ApiKeyCommands(IdentityBase):
    def issue_api_key(
        self,
        owner_id: UUID,
        *,
        name: str,
        permissions: Mapping[str, bool],
        description: str | None = None,
        expires_at: datetime | None = None,
        credential: Credential | None = None,
    ) -> IssuedKey:
        """``credential``: what the request was authenticated with; the new key may grant nothing
        it does not, nor outlive it (None: a trusted caller such as the CLI)."""
        new_key = generate_api_key()
        key_id = uuid4()

        def attempt() -> IssuedKey:
            check_within(credential, permissions, expires_at)
            owner = self._current_owner(owner_id)
            owner.check_live()
            api_key = ApiKey.issue(
                key_id=key_id,
                owner_id=owner_id,
                owner_is_superuser=owner.is_superuser,
                name=name,
                description=description,
                key_prefix=new_key.key_prefix,
                digest=new_key.digest,
                permissions=permissions,
                expires_at=expires_at,
                now=utcnow(),
            )
            ring = self._key_ring(owner_id)
            ring.add(key_id, name)  # a concurrent issue moves the ring on: retried, name checked again
            digest_claim = Reservation.claim("api_key_digest", new_key.digest, key_id, owner_id)
            return IssuedKey(self._save(api_key, ring, digest_claim), new_key.key)

        return with_retries(attempt)

    def update_api_key(
        self,
        key_id: UUID,
        *,
        name: str = UNCHANGED,
        description: str | None = UNCHANGED,
        permissions: Mapping[str, bool] = UNCHANGED,
        expires_at: datetime | None = UNCHANGED,
        expected_version: int | None = None,
        credential: Credential | None = None,
    ) -> CommandResult[ApiKey]:
        """Every field in one append. A credential may change only a key that grants nothing it
        does not and does not outlive it (else it could extend a stronger key's life), and only
        into such a key."""

        def change(api_key: ApiKey) -> list[Aggregate]:
            now, touched = utcnow(), list[Aggregate]()
            assert api_key.owner_id is not None
            check_within(credential, api_key.permissions, api_key.expires_at)
            check_within(
                credential,
                api_key.permissions if permissions is UNCHANGED else permissions,
                api_key.expires_at if expires_at is UNCHANGED else expires_at,
            )
            if name is not UNCHANGED and name != api_key.name:
                api_key.rename(name, now)
                ring = self._key_ring(api_key.owner_id)
                ring.rename(api_key.id, name)
                touched.append(ring)
            if description is not UNCHANGED:
                api_key.describe(description, now)
            if permissions is not UNCHANGED:
                owner = self._current_owner(api_key.owner_id)
                api_key.change_permissions(permissions, owner_is_superuser=owner.is_superuser, now=now)
            if expires_at is not UNCHANGED:
                api_key.change_expiry(expires_at, now)
            return touched

        return self._change(ApiKey, key_id, ApiKeyNotFoundError, change, expected_version)

    def _current_owner(self, owner_id: UUID) -> User:
        """The owner as stored now: the command decides on them but does not save them, so the
        append's version check would not catch a deletion or demotion another process made
        since this process last read the stream."""
        with fresh_reads():
            return self.get_user(owner_id)

    def rotate_api_key(
        self, key_id: UUID, *, grace_seconds: int = 0, credential: Credential | None = None
    ) -> IssuedKey:
        """A new secret for the key: refused to a credential the key would grant more than or
        outlive, and to a previous secret in its grace (it would take the key from the new one)."""
        new_key = generate_api_key()

        def change(api_key: ApiKey) -> list[Aggregate]:
            check_within(credential, api_key.permissions, api_key.expires_at)
            api_key.rotate(
                key_prefix=new_key.key_prefix,
                digest=new_key.digest,
                grace_seconds=grace_seconds,
                now=utcnow(),
            )
            assert api_key.owner_id is not None
            return [Reservation.claim("api_key_digest", new_key.digest, api_key.id, api_key.owner_id)]

        return IssuedKey(self._change(ApiKey, key_id, ApiKeyNotFoundError, change, None), new_key.key)

    def revoke_api_key(
        self, key_id: UUID, *, reason: str | None = None, already_revoked_is_fine: bool = False
    ) -> CommandResult[ApiKey]:
        """``reason`` is kept in the ``Revoked`` event (its audit entry shows it).
        ``already_revoked_is_fine``: a revoked key is left as it is, nothing written (deleting a
        key that is already revoked succeeds; revoking it again is a 409)."""

        def change(api_key: ApiKey) -> list[Aggregate]:
            if already_revoked_is_fine and api_key.is_revoked:
                return []
            api_key.revoke(reason)
            assert api_key.owner_id is not None
            ring = self._key_ring(api_key.owner_id)
            ring.remove(api_key.id)
            return [ring]

        return self._change(ApiKey, key_id, ApiKeyNotFoundError, change, None)

    def record_api_key_usage(
        self, key_id: UUID, *, count: int, last_used_at: datetime, last_used_ip: str | None
    ) -> CommandResult[ApiKey]:
        """Always recorded by the system (``USAGE_RECORDER``), never by an actor: the audit log's
        counts rely on it (usage entries never match an ``actor_id`` filter)."""

        def change(api_key: ApiKey) -> list[Aggregate]:
            api_key.record_usage(count=count, last_used_at=last_used_at, last_used_ip=last_used_ip)
            return []

        with acting_as(USAGE_RECORDER):
            return self._change(ApiKey, key_id, ApiKeyNotFoundError, change, None)
