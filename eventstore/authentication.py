"""Authentication use cases: password logins and API-key verification."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from eventsourcing.domain import Aggregate

from domain.errors import AuthenticationError
from domain.users import User
from eventstore.api_key_tokens import digest_of, is_well_formed
from eventstore.commands import CommandResult, VerifiedKey, utcnow, with_retries
from eventstore.identity_base import IdentityBase


class Authentication(IdentityBase):
    def authenticate(
        self,
        login: str,
        password: str,
        *,
        now: datetime | None = None,
        also: Callable[[User], list[Aggregate]] = lambda _: [],
    ) -> CommandResult:
        """Check a password login. Raises ``AuthenticationError`` (one message for every cause).
        ``also`` returns what a successful login saves with the user, in the same append.

        Bad passwords are recorded (bounded by the lockout: at most ``max_failures`` per lock
        period); refusals of locked, inactive or deleted accounts are not, so nobody can grow a
        user's stream at will. Every failure takes at least ``login_failure_floor`` seconds, so
        an unknown user, a known one and a refused one cannot be told apart by time.
        """
        started = time.monotonic()
        try:
            return self._authenticate(login, password, now or utcnow(), also)
        except AuthenticationError:
            time.sleep(max(0.0, self.login_failure_floor - (time.monotonic() - started)))
            raise

    def _authenticate(
        self, login: str, password: str, now: datetime, also: Callable[[User], list[Aggregate]]
    ) -> CommandResult:
        user_id = self.find_user_id(login)
        if user_id is None:
            self.passwords.verify_nothing(password)
            raise AuthenticationError("unknown_user")
        checked: dict[str, bool] = {}  # hash -> verdict, so a retry hashes again only if it changed

        def attempt() -> CommandResult:
            user = self.get_user(user_id)
            if user.password_hash not in checked:
                checked[user.password_hash] = self.passwords.verify(user.password_hash, password)
            refusal = user.login_refusal(now)
            if refusal is not None:
                raise refusal
            if not checked[user.password_hash]:
                user.record_failed_login("bad_password", now, self.lockout)
                self._save(user)
                raise AuthenticationError("bad_password")
            user.record_login(now)
            if self.passwords.needs_rehash(user.password_hash):
                user.rehash_password(self.passwords.hash(password))
            return self._save(user, *also(user))

        # A concurrent attempt changed the user: decide again on its new state.
        return with_retries(attempt)

    def verify_api_key(self, key: str, *, now: datetime | None = None) -> VerifiedKey:
        """Resolve a presented key, refusing malformed keys before any lookup."""
        now = now or utcnow()
        if not is_well_formed(key):
            raise AuthenticationError("malformed_key")
        digest = digest_of(key)
        key_id = self._holder("api_key_digest", digest)
        if key_id is None:
            raise AuthenticationError("unknown_key")
        api_key = self.get_api_key(key_id)
        if not api_key.accepts(digest, now):
            raise AuthenticationError("key_not_accepted")
        assert api_key.owner_id is not None
        owner = self.get_user(api_key.owner_id)
        if owner.is_deleted or not owner.is_active:
            raise AuthenticationError("owner_inactive")
        return VerifiedKey(api_key.id, owner.id, owner.is_superuser, dict(api_key.permissions or {}))
