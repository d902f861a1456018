"""Who is calling: API keys (``X-API-Key`` or ``Authorization: Bearer llk_...``) and access
tokens (``Authorization: Bearer <jwt>``), resolved to a ``Principal``.

Verified keys are cached per process by digest, so the hot path does no database work; the
cache is invalidated from the event stream (``CredentialWatcher``) within a fraction of a second
of a revocation, rotation, permission change, or a change to the owner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from api.tokens import AccessTokens
from domain.errors import AuthenticationError
from domain.scopes import ADMIN_ONLY, grants
from domain.sessions import Session
from domain.users import User
from eventstore.api_key_tokens import PRODUCT_PREFIX, digest_of, is_well_formed
from eventstore.identity import Identity
from projections.api_keys.projection import ApiKeysProjection

logger = logging.getLogger("ledgerline.api")


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    is_superuser: bool
    credential_type: str  # "api_key" | "access_token"
    credential_id: UUID
    permissions: Mapping[str, bool] | None  # None: the user's full rights (access tokens)

    def may(self, scope: str) -> bool:
        if self.permissions is None:
            return self.is_superuser or scope not in ADMIN_ONLY
        return grants(self.permissions, scope, owner_is_superuser=self.is_superuser)

    def reaches_user(self, user_id: UUID, scope: str) -> bool:
        """Self always; anyone else only as an admin whose credential holds ``scope``."""
        return self.user_id == user_id or (self.is_superuser and self.may(scope))


@dataclass
class _Cached:
    principal: Principal
    expires_at: datetime | None
    grace_until: datetime | None


class CredentialCache:
    """Verified credentials by digest (keys) or user id (tokens); dropped when their key or
    owner changes. Entries also expire after ``ttl`` seconds as a backstop."""

    def __init__(self, ttl: float = 30.0) -> None:
        self._entries: dict[str, tuple[float, _Cached]] = {}
        self._lock = threading.Lock()
        self.ttl = ttl

    def get(self, key: str, now: datetime) -> Principal | None:
        with self._lock:
            hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        cached = hit[1]
        if cached.expires_at is not None and now >= cached.expires_at:
            return None
        if cached.grace_until is not None and now >= cached.grace_until:
            return None
        return cached.principal

    def put(self, key: str, cached: _Cached) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, cached)

    def invalidate(self, ids: set[UUID]) -> None:
        with self._lock:
            stale = [
                key
                for key, (_, cached) in self._entries.items()
                if cached.principal.credential_id in ids or cached.principal.user_id in ids
            ]
            for key in stale:
                del self._entries[key]


class Authenticator:
    def __init__(self, identity: Identity, tokens: AccessTokens, cache: CredentialCache) -> None:
        self.identity = identity
        self.tokens = tokens
        self.cache = cache

    def authenticate(self, api_key: str | None, bearer: str | None) -> Principal:
        """Blocking (may read the event store): run it in a worker thread."""
        now = datetime.now(UTC)
        presented = api_key or bearer
        if not presented:
            raise AuthenticationError("missing")
        if api_key or presented.startswith(PRODUCT_PREFIX):
            return self._by_api_key(presented, now)
        return self._by_access_token(presented, now)

    def _by_api_key(self, key: str, now: datetime) -> Principal:
        if not is_well_formed(key):
            raise AuthenticationError("malformed_key")  # no lookup, no cache entry
        digest = digest_of(key)
        principal = self.cache.get(digest, now)
        if principal is not None:
            return principal
        verified = self.identity.verify_api_key(key, now=now)
        api_key = self.identity.get_api_key(verified.key_id)
        principal = Principal(
            user_id=verified.owner_id,
            is_superuser=verified.owner_is_superuser,
            credential_type="api_key",
            credential_id=verified.key_id,
            permissions=verified.permissions,
        )
        in_grace = api_key.digest != digest  # the previous secret, during a rotation's grace
        self.cache.put(
            digest, _Cached(principal, api_key.expires_at, api_key.grace_until if in_grace else None)
        )
        return principal

    def _by_access_token(self, token: str, now: datetime) -> Principal:
        """A signed, unexpired token whose session is not logged out and whose user is active."""
        claims = self.tokens.verify(token)
        cache_key = f"session:{claims.session_id}"
        principal = self.cache.get(cache_key, now)
        if principal is None:
            user = self.identity.get_user(claims.user_id)
            live = self.identity.session_is_live(claims.session_id)
            if (
                user.is_deleted
                or not user.is_active
                or not live
                or not user.accepts_credentials_from(claims.issued_at)
            ):
                raise AuthenticationError("session_ended")
            principal = Principal(user.id, user.is_superuser, "access_token", claims.session_id, None)
            self.cache.put(cache_key, _Cached(principal, None, None))
        return principal


WATCHED_TOPICS = [
    *(topic for topic in ApiKeysProjection.topics if not topic.endswith(".UsageRecorded")),
    Session.Revoked.TOPIC,
    *(User.__dict__[name].TOPIC for name in ("Deactivated", "Activated", "Deleted", "Restored", "Erased",
                                             "SuperuserGranted", "SuperuserRevoked", "PasswordChanged",
                                             "PasswordReset")),
]  # fmt: skip


class CredentialWatcher(threading.Thread):
    """Follows the event stream and drops cached credentials whose key or owner changed: a
    revocation in any process takes effect in every process within ``interval`` seconds."""

    def __init__(
        self, identity: Identity, cache: CredentialCache, stop: threading.Event, interval: float = 0.2
    ):
        super().__init__(name="credential-watcher", daemon=True)
        self.identity, self.cache, self.stop, self.interval = identity, cache, stop, interval
        self.position = identity.head_position()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # the database may be away: keep watching
                logger.warning("credential watcher could not read the event stream", exc_info=True)

    def poll(self) -> None:
        head = self.identity.head_position()
        if head <= self.position:
            return
        changed = self.identity.recorder.select_notifications(
            self.position, 10_000, stop=head, topics=WATCHED_TOPICS, inclusive_of_start=False
        )
        if changed:
            self.cache.invalidate({UUID(str(n.originator_id)) for n in changed})
        self.position = head
