"""The Identity application: one method per use case, each one atomic append.

Every command returns a ``CommandResult``: the aggregate id and the global position of the last
event it wrote (for read-your-writes). Uniqueness is enforced by reservation aggregates and key
rings saved in the same append; concurrent writers on one aggregate are resolved by the event
store's version check (retried where the command has no client-supplied version).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder

from domain.api_keys import ApiKey
from domain.errors import (
    ApiKeyNotFoundError,
    AuthenticationError,
    ConcurrentChangeError,
    EmailTakenError,
    UsernameTakenError,
    UserNotFoundError,
    VersionMismatchError,
    WrongPasswordError,
)
from domain.key_rings import KeyRing, key_ring_id
from domain.reservations import Reservation, reservation_id
from domain.users import User, normalise_email
from domain.values import Lockout
from eventstore.api_key_tokens import digest_of, generate_api_key, is_well_formed
from eventstore.passwords import Passwords
from eventstore.personal_data import AuditEnvelopeAsDict, DataKeyStore, PersonalDataAsCiphertext, derive_key

T = TypeVar("T", bound=Aggregate)
R = TypeVar("R")
UNCHANGED: Any = object()  # "leave this field as it is" in partial updates
RETRIES = 20
DEFAULT_LOCKOUT = Lockout()


@dataclass(frozen=True)
class CommandResult:
    id: UUID
    position: int
    version: int


@dataclass(frozen=True)
class IssuedKey:
    result: CommandResult
    key: str  # the secret, to show once


@dataclass(frozen=True)
class VerifiedKey:
    key_id: UUID
    owner_id: UUID
    owner_is_superuser: bool
    permissions: dict[str, bool]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Identity(Application[UUID]):
    name = "Identity"
    snapshotting_intervals = {User: 50, ApiKey: 50, KeyRing: 50}

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        data_keys: DataKeyStore,
        secret: bytes,
        passwords: Passwords,
        lockout: Lockout = DEFAULT_LOCKOUT,
    ) -> None:
        self.data_keys = data_keys  # needed by the transcoder, built in super().__init__
        self.passwords = passwords
        self.lockout = lockout
        self._email_pepper = derive_key(secret, "email-reservation")
        super().__init__(env=dict(env))

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(PersonalDataAsCiphertext(self.data_keys))
        transcoder.register(AuditEnvelopeAsDict())

    # ---- reads ------------------------------------------------------------------------------

    def get_user(self, user_id: UUID, *, version: int | None = None) -> User:
        return self._get(User, user_id, UserNotFoundError, version=version)

    def get_api_key(self, key_id: UUID, *, version: int | None = None) -> ApiKey:
        return self._get(ApiKey, key_id, ApiKeyNotFoundError, version=version)

    def find_user_id(self, login: str) -> UUID | None:
        """The user holding this username or e-mail address (ignoring case)."""
        kind, value = ("email", self._email_key(login)) if "@" in login else ("username", login.casefold())
        return self._holder(kind, value)

    def head_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    # ---- users ------------------------------------------------------------------------------

    def register_user(
        self,
        *,
        username: str,
        email: str,
        password: str,
        full_name: str | None = None,
        is_superuser: bool = False,
    ) -> CommandResult:
        password_hash = self.passwords.hash(password)
        user_id = uuid4()
        user = User.register(
            user_id=user_id,
            username=username,
            email=email,
            password_hash=password_hash,
            full_name=full_name,
            is_superuser=is_superuser,
        )
        claims = [
            self._claim("username", username.casefold(), user_id, user_id, UsernameTakenError),
            self._claim("email", self._email_key(email), user_id, user_id, EmailTakenError),
        ]
        try:
            return self._save(user, *claims)
        except IntegrityError:
            # A concurrent registration won a reservation first: name the one we lost.
            self._claim("username", username.casefold(), user_id, user_id, UsernameTakenError)
            self._claim("email", self._email_key(email), user_id, user_id, EmailTakenError)
            raise ConcurrentChangeError("registration raced another writer") from None

    def update_profile(
        self, user_id: UUID, *, full_name: str | None, expected_version: int | None = None
    ) -> CommandResult:
        return self._change_user(user_id, lambda u: u.update_profile(full_name=full_name), expected_version)

    def change_email(
        self, user_id: UUID, email: str, *, expected_version: int | None = None
    ) -> CommandResult:
        def change(user: User) -> list[Aggregate]:
            if normalise_email(email) == user.email_address:
                return []
            old = self._reservation("email", self._email_key(user.email_address))
            user.change_email(email)
            new = self._claim("email", self._email_key(email), user.id, user.id, EmailTakenError)
            if old is None or old.owner_id != user.id:
                return [new]
            old.release()  # the previous address is free for others again
            return [new, old]

        return self._change(User, user_id, UserNotFoundError, change, expected_version)

    def change_password(self, user_id: UUID, *, current_password: str, new_password: str) -> CommandResult:
        user = self.get_user(user_id)
        if not self.passwords.verify(user.password_hash, current_password):
            raise WrongPasswordError("current password is wrong")
        new_hash = self.passwords.hash(new_password)
        return self._change_user(user_id, lambda u: u.change_password(new_hash))

    def set_password(self, user_id: UUID, new_password: str) -> CommandResult:
        """An administrator's reset: no current password."""
        new_hash = self.passwords.hash(new_password)
        return self._change_user(user_id, lambda u: u.change_password(new_hash))

    def request_email_verification(
        self, user_id: UUID, *, ttl: timedelta = timedelta(days=2)
    ) -> tuple[CommandResult, str]:
        """Returns the one-time token to send to the user; only its digest is stored."""
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + ttl
        result = self._change_user(user_id, lambda u: u.request_verification(digest_of(token), expires_at))
        return result, token

    def verify_user(self, user_id: UUID, *, token: str | None = None) -> CommandResult:
        digest = None if token is None else digest_of(token)
        return self._change_user(user_id, lambda u: u.verify(token_digest=digest, now=utcnow()))

    def activate_user(self, user_id: UUID) -> CommandResult:
        return self._change_user(user_id, User.activate)

    def deactivate_user(self, user_id: UUID) -> CommandResult:
        return self._change_user(user_id, User.deactivate)

    def grant_superuser(self, user_id: UUID) -> CommandResult:
        return self._change_user(user_id, User.grant_superuser)

    def revoke_superuser(self, user_id: UUID) -> CommandResult:
        return self._change_user(user_id, User.revoke_superuser)

    def unlock_user(self, user_id: UUID) -> CommandResult:
        return self._change_user(user_id, lambda u: u.unlock(utcnow()))

    def delete_user(self, user_id: UUID) -> CommandResult:
        """Soft delete: the user and all their live keys go in one append; names stay reserved."""

        def change(user: User) -> list[Aggregate]:
            user.delete()
            return self._revoke_all_keys(user.id, "owner deleted")

        return self._change(User, user_id, UserNotFoundError, change, None)

    def restore_user(self, user_id: UUID) -> CommandResult:
        return self._change_user(user_id, User.restore)

    def erase_user(self, user_id: UUID) -> CommandResult:
        """GDPR erasure: record ``User.Erased`` (and revoke keys), then destroy the data key.

        Safe to call again if the key destruction failed after the event was stored.
        """
        if self.get_user(user_id).is_erased:
            self.data_keys.erase(user_id)  # finish an erasure interrupted before the key went

        def change(user: User) -> list[Aggregate]:
            user.erase()
            return self._revoke_all_keys(user.id, "owner erased")

        result = self._change(User, user_id, UserNotFoundError, change, None)
        self.data_keys.erase(user_id)
        return result

    # ---- authentication ---------------------------------------------------------------------

    def authenticate(self, login: str, password: str, *, now: datetime | None = None) -> CommandResult:
        """Check a password login; every outcome is recorded on the user, every failure raises
        ``AuthenticationError`` (same message for every cause)."""
        now = now or utcnow()
        user_id = self.find_user_id(login)
        if user_id is None:
            self.passwords.verify_nothing(password)
            raise AuthenticationError("unknown_user")
        checked: dict[str, bool] = {}  # password hash -> verified, so a retry hashes only if it changed

        def attempt() -> CommandResult:
            user = self.get_user(user_id)
            if user.password_hash not in checked:
                checked[user.password_hash] = self.passwords.verify(user.password_hash, password)
            refusal = user.login_refusal(now)
            if refusal is not None:
                user.record_failed_login(refusal.reason, now, self.lockout)
                self._save(user)
                raise refusal
            if not checked[user.password_hash]:
                user.record_failed_login("bad_password", now, self.lockout)
                self._save(user)
                raise AuthenticationError("bad_password")
            user.record_login(now)
            if self.passwords.needs_rehash(user.password_hash):
                user.rehash_password(self.passwords.hash(password))
            return self._save(user)

        # A concurrent attempt changed the user: decide again on its new state.
        return self._with_retries(attempt)

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

    # ---- API keys ---------------------------------------------------------------------------

    def issue_api_key(
        self,
        owner_id: UUID,
        *,
        name: str,
        permissions: Mapping[str, bool],
        description: str | None = None,
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        new_key = generate_api_key()
        key_id = uuid4()

        def attempt() -> IssuedKey:
            owner = self.get_user(owner_id)
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

        return self._with_retries(attempt)

    def update_api_key(
        self,
        key_id: UUID,
        *,
        name: str = UNCHANGED,
        description: str | None = UNCHANGED,
        permissions: Mapping[str, bool] = UNCHANGED,
        expires_at: datetime | None = UNCHANGED,
        expected_version: int | None = None,
    ) -> CommandResult:
        def change(api_key: ApiKey) -> list[Aggregate]:
            now, touched = utcnow(), list[Aggregate]()
            assert api_key.owner_id is not None
            if name is not UNCHANGED and name != api_key.name:
                api_key.rename(name, now)
                ring = self._key_ring(api_key.owner_id)
                ring.rename(api_key.id, name)
                touched.append(ring)
            if description is not UNCHANGED:
                api_key.describe(description, now)
            if permissions is not UNCHANGED:
                owner = self.get_user(api_key.owner_id)
                api_key.change_permissions(permissions, owner_is_superuser=owner.is_superuser, now=now)
            if expires_at is not UNCHANGED:
                api_key.change_expiry(expires_at, now)
            return touched

        return self._change(ApiKey, key_id, ApiKeyNotFoundError, change, expected_version)

    def rotate_api_key(self, key_id: UUID, *, grace_seconds: int = 0) -> IssuedKey:
        new_key = generate_api_key()

        def change(api_key: ApiKey) -> list[Aggregate]:
            api_key.rotate(
                key_prefix=new_key.key_prefix,
                digest=new_key.digest,
                grace_seconds=grace_seconds,
                now=utcnow(),
            )
            assert api_key.owner_id is not None
            return [Reservation.claim("api_key_digest", new_key.digest, api_key.id, api_key.owner_id)]

        return IssuedKey(self._change(ApiKey, key_id, ApiKeyNotFoundError, change, None), new_key.key)

    def revoke_api_key(self, key_id: UUID, *, reason: str | None = None) -> CommandResult:
        def change(api_key: ApiKey) -> list[Aggregate]:
            api_key.revoke(reason)
            assert api_key.owner_id is not None
            ring = self._key_ring(api_key.owner_id)
            ring.remove(api_key.id)
            return [ring]

        return self._change(ApiKey, key_id, ApiKeyNotFoundError, change, None)

    def record_api_key_usage(
        self, key_id: UUID, *, count: int, last_used_at: datetime, last_used_ip: str | None
    ) -> CommandResult:
        return self._change(
            ApiKey, key_id, ApiKeyNotFoundError,
            lambda k: k.record_usage(count=count, last_used_at=last_used_at, last_used_ip=last_used_ip),
            None,
        )  # fmt: skip

    def api_key_ids_of(self, owner_id: UUID) -> list[UUID]:
        """The owner's live (unrevoked) keys."""
        try:
            ring: Aggregate = self.repository.get(key_ring_id(owner_id))
        except AggregateNotFoundError:
            return []
        assert isinstance(ring, KeyRing)
        return ring.key_ids

    # ---- internals --------------------------------------------------------------------------

    def _email_key(self, email: str) -> str:
        """A keyed hash of the normalised address: reservations never hold the e-mail itself."""
        return hmac.new(self._email_pepper, normalise_email(email).encode(), hashlib.sha256).hexdigest()

    def _get(
        self, cls: type[T], aggregate_id: UUID, missing: type[Exception], *, version: int | None = None
    ) -> T:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise missing(aggregate_id) from None
        if not isinstance(aggregate, cls):
            raise missing(aggregate_id)
        return aggregate

    def _reservation(self, kind: str, value: str) -> Reservation | None:
        try:
            reservation: Aggregate = self.repository.get(reservation_id(kind, value))
        except AggregateNotFoundError:
            return None
        assert isinstance(reservation, Reservation)
        return reservation

    def _holder(self, kind: str, value: str) -> UUID | None:
        reservation = self._reservation(kind, value)
        return None if reservation is None else reservation.owner_id

    def _claim(
        self, kind: str, value: str, owner_id: UUID, subject_id: UUID, taken: Callable[[], Exception]
    ) -> Reservation:
        reservation = self._reservation(kind, value)
        if reservation is None:
            return Reservation.claim(kind, value, owner_id, subject_id)
        if reservation.owner_id not in (None, owner_id):
            raise taken()
        if reservation.owner_id is None:
            reservation.reclaim(owner_id, subject_id)
        return reservation

    def _key_ring(self, owner_id: UUID) -> KeyRing:
        try:
            ring: Aggregate = self.repository.get(key_ring_id(owner_id))
        except AggregateNotFoundError:
            return KeyRing.open(owner_id)
        assert isinstance(ring, KeyRing)
        return ring

    def _revoke_all_keys(self, owner_id: UUID, reason: str) -> list[Aggregate]:
        ring = self._key_ring(owner_id)
        keys: list[Aggregate] = []
        for key_id in ring.key_ids:
            api_key = self.get_api_key(key_id)
            if not api_key.is_revoked:
                api_key.revoke(reason)
                keys.append(api_key)
            ring.remove(key_id)
        return [*keys, ring] if keys or ring.pending_events else keys

    def _change_user(
        self, user_id: UUID, change: Callable[[User], object], expected_version: int | None = None
    ) -> CommandResult:
        def apply(user: User) -> list[Aggregate]:
            change(user)
            return []

        return self._change(User, user_id, UserNotFoundError, apply, expected_version)

    def _change(
        self,
        cls: type[T],
        aggregate_id: UUID,
        missing: type[Exception],
        change: Callable[[T], object],
        expected_version: int | None,
    ) -> CommandResult:
        """Load, change, save; on a version conflict, retry from fresh state unless the client
        named the version it expected (then the conflict is theirs to resolve: 412)."""

        def attempt() -> CommandResult:
            aggregate = self._get(cls, aggregate_id, missing)
            if expected_version is not None and aggregate.version != expected_version:
                raise VersionMismatchError(expected_version, aggregate.version)
            others = change(aggregate)
            try:
                return self._save(aggregate, *(others if isinstance(others, list) else []))
            except IntegrityError:
                if expected_version is None:
                    raise
                current = self._get(cls, aggregate_id, missing).version
                raise VersionMismatchError(expected_version, current) from None

        return self._with_retries(attempt)

    @staticmethod
    def _with_retries(attempt: Callable[[], R]) -> R:
        """Run ``attempt``; after a version conflict, pause a random, growing moment and run it
        again on fresh state. Conflicts never reach the caller unless they persist."""
        for n in range(RETRIES):
            try:
                return attempt()
            except IntegrityError:
                time.sleep(random.uniform(0, 0.002 * 2 ** min(n, 5)))  # noqa: S311 (jitter, not crypto)
        raise ConcurrentChangeError("too many concurrent changes; try again")

    def _save(self, main: Aggregate, *others: Aggregate) -> CommandResult:
        recordings = self.save(main, *others)
        position = max((r.notification.id for r in recordings), default=None)
        return CommandResult(
            main.id, position if position is not None else self.head_position(), main.version
        )
