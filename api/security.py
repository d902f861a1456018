"""Who is calling: API keys (``X-API-Key`` or ``Authorization: Bearer llk_...``) and access
tokens (``Authorization: Bearer <jwt>``), resolved to a ``Principal``.

Verified credentials are cached per process. The cache is current as of a known position: each
request first brings this process's ``StreamFollower`` up to the head of the event stream
(``api.context``; the follower drops what the new events end), so a revocation, rotation,
permission change, logout, password change or change to the owner made in any process is seen
by every request that starts after it was answered. Each entry is stamped with the position it
was read at, and the cache refuses an entry older than the last invalidation of its credential
or owner, so a verification in flight while its key is revoked cannot fill the cache again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from api.tokens import AccessTokens
from domain.errors import AuthenticationError
from eventstore.api_key_tokens import PRODUCT_PREFIX, digest_of, is_well_formed
from eventstore.identity import Identity


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    is_superuser: bool
    credential_type: str  # "api_key" | "access_token"
    credential_id: UUID
    permissions: Mapping[str, bool] | None  # None: the user's full rights (access tokens)
    # When the credential stops working (None: not by time; an access token renews by refresh),
    # and whether it is a rotated key's previous secret: what it may hand out (domain.scopes).
    expires_at: datetime | None = None
    in_grace: bool = False
    # What it may do and whose resources it reaches: api.authorization (domain.scopes.Credential).


@dataclass
class _Cached:
    principal: Principal
    expires_at: datetime | None
    grace_until: datetime | None
    read_at: int  # the stream position before the credential was read


class CredentialCache:
    """Verified credentials by digest (keys) or session; dropped by ``invalidate`` when events
    change their key, session or owner. Entries also expire after ``ttl`` seconds (a backstop)."""

    def __init__(self, ttl: float = 30.0, remember: int = 100_000) -> None:
        self._entries: dict[str, tuple[float, _Cached]] = {}
        self._invalidated_at: dict[UUID, int] = {}  # id -> position of its last invalidating event
        self._floor = 0  # positions forgotten from _invalidated_at: entries read before are refused
        self._remember = remember
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
        """Keep ``cached`` unless an event newer than its read changed its credential or owner."""
        ids = (cached.principal.credential_id, cached.principal.user_id)
        with self._lock:
            newest = max((self._invalidated_at.get(i, 0) for i in ids), default=0)
            if cached.read_at < max(newest, self._floor):
                return
            self._entries[key] = (time.monotonic() + self.ttl, cached)

    def invalidate(self, changed: Mapping[UUID, int]) -> None:
        """``changed``: each id with the position of the event that changed it."""
        with self._lock:
            for changed_id, position in changed.items():
                self._invalidated_at[changed_id] = max(position, self._invalidated_at.get(changed_id, 0))
            stale = [
                key
                for key, (_, cached) in self._entries.items()
                if any(
                    cached.read_at < changed.get(i, -1)
                    for i in (cached.principal.credential_id, cached.principal.user_id)
                )
            ]
            for key in stale:
                del self._entries[key]
            if len(self._invalidated_at) > self._remember:  # forget the oldest half
                by_position = sorted(self._invalidated_at.items(), key=lambda item: item[1])
                self._floor = by_position[len(by_position) // 2][1]
                self._invalidated_at = dict(by_position[len(by_position) // 2 :])


class Authenticator:
    """Resolves credentials once the request has brought the stream follower to the head (the
    caches are then current as of ``follower.position``): ``cached`` from memory, on the event
    loop; ``verify`` (blocking: it reads the event store) in a worker thread on a miss."""

    def __init__(self, identity: Identity, tokens: AccessTokens, cache: CredentialCache) -> None:
        self.identity = identity
        self.tokens = tokens
        self.cache = cache

    def cached(self, api_key: str | None, bearer: str | None) -> Principal | None:
        """The principal from memory, or None: ask ``verify``. Malformed keys and tokens that
        fail their signature or lifetime are refused here, without a lookup."""
        now = datetime.now(UTC)
        presented = api_key or bearer
        if not presented:
            raise AuthenticationError("missing")
        if api_key or presented.startswith(PRODUCT_PREFIX):
            if not is_well_formed(presented):
                raise AuthenticationError("malformed_key")  # no lookup, no cache entry
            return self.cache.get(digest_of(presented), now)
        return self.cache.get(f"session:{self.tokens.verify(presented).session_id}", now)

    def verify(self, api_key: str | None, bearer: str | None, read_at: int) -> Principal:
        """Blocking: the credential read from the store, which holds at least everything up to
        ``read_at`` (the position the follower had reached: the cache entry is stamped with it)."""
        now = datetime.now(UTC)
        presented = api_key or bearer
        if not presented:
            raise AuthenticationError("missing")
        if api_key or presented.startswith(PRODUCT_PREFIX):
            return self._by_api_key(presented, now, read_at)
        return self._by_access_token(presented, now, read_at)

    def _by_api_key(self, key: str, now: datetime, read_at: int) -> Principal:
        if not is_well_formed(key):
            raise AuthenticationError("malformed_key")  # no lookup, no cache entry
        digest = digest_of(key)
        principal = self.cache.get(digest, now)
        if principal is not None:
            return principal
        verified = self.identity.verify_api_key(key, now=now)
        api_key = self.identity.get_api_key(verified.key_id)
        in_grace = api_key.digest != digest  # the previous secret, during a rotation's grace
        grace_until = api_key.grace_until if in_grace else None
        ends = [end for end in (api_key.expires_at, grace_until) if end is not None]
        principal = Principal(
            user_id=verified.owner_id,
            is_superuser=verified.owner_is_superuser,
            credential_type="api_key",
            credential_id=verified.key_id,
            permissions=verified.permissions,
            expires_at=min(ends, default=None),
            in_grace=in_grace,
        )
        self.cache.put(digest, _Cached(principal, api_key.expires_at, grace_until, read_at))
        return principal

    def _by_access_token(self, token: str, now: datetime, read_at: int) -> Principal:
        """A signed, unexpired token of a session that is still live (not logged out, its user
        active and nothing such as a password change ended it since it started)."""
        claims = self.tokens.verify(token)
        cache_key = f"session:{claims.session_id}"
        principal = self.cache.get(cache_key, now)
        if principal is None:
            user = self.identity.user_of_live_session(claims.session_id)
            if user.id != claims.user_id:
                raise AuthenticationError("session_ended")
            principal = Principal(user.id, user.is_superuser, "access_token", claims.session_id, None)
            self.cache.put(cache_key, _Cached(principal, None, None, read_at))
        return principal
