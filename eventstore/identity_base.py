"""The shared machinery of the Identity application: configuration, loading, reservations,
the load-change-save cycle and its retries."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from copy import deepcopy
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    project_aggregate,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore, JSONTranscoder, Recording, Transcoder

from domain.api_keys import ApiKey
from domain.errors import ApiKeyNotFoundError, UserNotFoundError, VersionMismatchError
from domain.key_rings import KeyRing, key_ring_id
from domain.reservations import Reservation, reservation_id
from domain.subscriptions import SubscriptionList
from domain.users import User, normalise_email
from domain.values import Lockout
from eventstore.aggregate_cache import AggregateCache
from eventstore.commands import CommandResult, reads_fresh, with_retries
from eventstore.passwords import Passwords
from eventstore.personal_data import (
    AuditEnvelopeAsDict,
    DataKeyStore,
    PersonalDataAsCiphertext,
    StoredPersonalDataAsCiphertext,
    derive_key,
)
from eventstore.snapshots import AuthenticatedSnapshots
from eventstore.transcoder import FastJSONTranscoder, UUIDAsHexParsedOnce

T = TypeVar("T", bound=Aggregate)
DEFAULT_LOCKOUT = Lockout()


class IdentityBase(Application[UUID]):
    snapshotting_intervals = {User: 50, ApiKey: 50, KeyRing: 50, SubscriptionList: 50}

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        data_keys: DataKeyStore,
        secret: bytes,
        passwords: Passwords,
        lockout: Lockout = DEFAULT_LOCKOUT,
        login_failure_floor: float = 0.15,
        aggregate_cache: int = 10_000,
    ) -> None:
        self.data_keys = data_keys  # needed by the transcoder, built in super().__init__
        self.passwords = passwords
        self.lockout = lockout
        self.login_failure_floor = login_failure_floor
        self._email_pepper = derive_key(secret, "email-reservation")
        self.snapshot_key = derive_key(secret, "snapshot-mac")  # read by construct_snapshot_store
        self.webhook_key = derive_key(secret, "webhook-signing-secrets")  # subscription_commands
        # The library's repository cache stays off: this one is told by the stream what changed.
        self.aggregates = AggregateCache(aggregate_cache) if aggregate_cache else None
        # Told how many events each committed save appended (the API's metrics count them).
        self.on_append: list[Callable[[int], object]] = []
        super().__init__(env={**env, "AGGREGATE_CACHE_MAXSIZE": ""})

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        """The library calls this after every committed save."""
        for listener in self.on_append:
            listener(len(recordings))

    def _repository_get(self, aggregate_id: UUID, version: int | None = None) -> Aggregate:
        """A copy of the aggregate: the cached one when the stream's follower vouches that it is
        current (no query), else the cached one brought up to date from the store (one query for
        its newer events), else a load from its snapshot and events."""
        cache = self.aggregates
        if version is not None or cache is None:
            return self.repository.get(aggregate_id, version=version)
        if not reads_fresh() and (current := cache.current(aggregate_id)) is not None:
            return deepcopy(current)
        generation, base = cache.generation, cache.entry(aggregate_id)
        aggregate: Aggregate | None
        if base is None:
            aggregate = self.repository.get(aggregate_id)
        else:
            aggregate = project_aggregate(deepcopy(base), self.events.get(aggregate_id, gt=base.version))
            if aggregate is None:  # not possible for a stored aggregate; the library's contract
                raise AggregateNotFoundError(aggregate_id)
        cache.put(aggregate, generation)
        return deepcopy(aggregate)

    def _erase_subject(self, subject_id: UUID) -> None:
        if self.aggregates is not None:
            self.aggregates.erase_subject(subject_id)

    def cached_user(self, user_id: UUID) -> User | None:
        """The user from memory, if the stream's follower vouches for the cached copy and their
        data key is at hand (shared: read it, do not change it); None means: read it with
        ``get_user`` in a worker thread."""
        user = None if self.aggregates is None else self.aggregates.current(user_id)
        if not isinstance(user, User) or not self.data_keys.is_cached(user_id):
            return None  # reading its personal data would query the data key: not on the loop
        return user

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshots of what the save just stored, from the aggregate in hand (the library reads
        it back from the store first); one saved past the snapshot's version is read back."""
        if not self.snapshots or not self.snapshotting_intervals:
            return
        for event in processing_event.events:
            aggregate = processing_event.aggregates.get(event.originator_id)
            interval = None if aggregate is None else self.snapshotting_intervals.get(type(aggregate))
            if aggregate is None or interval is None or event.originator_version % interval:
                continue
            if aggregate.version != event.originator_version:
                self.take_snapshot(event.originator_id, version=event.originator_version)
                continue
            snapshot_class = getattr(type(aggregate), "Snapshot", type(self).snapshot_class)
            assert snapshot_class is not None, "the library's Snapshot is the default"
            self.snapshots.put([snapshot_class.take(aggregate)])

    def construct_snapshot_store(self) -> EventStore[UUID]:
        """Snapshots carry a MAC the database cannot forge; one that fails it is replayed past."""
        return AuthenticatedSnapshots(
            self.mapper, self.factory.aggregate_recorder(purpose="snapshots"), self.snapshot_key
        )

    def construct_transcoder(self) -> Transcoder:
        transcoder = FastJSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(UUIDAsHexParsedOnce())  # replaces the library's, same name and form
        transcoder.register(PersonalDataAsCiphertext(self.data_keys))
        transcoder.register(StoredPersonalDataAsCiphertext(self.data_keys))  # same name, same decoding
        transcoder.register(AuditEnvelopeAsDict())

    # ---- reads ------------------------------------------------------------------------------

    def get_user(self, user_id: UUID, *, version: int | None = None) -> User:
        return self._get(User, user_id, UserNotFoundError, version=version)

    def get_api_key(self, key_id: UUID, *, version: int | None = None) -> ApiKey:
        return self._get(ApiKey, key_id, ApiKeyNotFoundError, version=version)

    def get_user_as_of(
        self, user_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> User:
        """The user at ``version``, or at the moment ``as_of`` (the last event at or before it);
        ``UserNotFoundError`` if they did not exist yet."""
        current = self.get_user(user_id)
        if as_of is not None:
            last = self._last_version_at(user_id, current.version, as_of)
            if last is None:
                raise UserNotFoundError(user_id)
            version = min(last, version) if version is not None else last
        if version is not None and version > current.version:
            raise UserNotFoundError(user_id)
        return self.get_user(user_id, version=version)  # replays from the nearest snapshot

    def _last_version_at(self, aggregate_id: UUID, head: int, moment: datetime) -> int | None:
        """The last version recorded at or before ``moment``: a binary search over the
        aggregate's event times (non-decreasing), reading one event per probe."""
        found, low, high = None, 1, head
        while low <= high:
            middle = (low + high) // 2
            (event,) = self.events.get(aggregate_id, gt=middle - 1, lte=middle)
            if event.timestamp <= moment:  # type: ignore[attr-defined]
                found, low = middle, middle + 1
            else:
                high = middle - 1
        return found

    def find_user_id(self, login: str) -> UUID | None:
        """The user holding this username or e-mail address (ignoring case)."""
        kind, value = ("email", self._email_key(login)) if "@" in login else ("username", login.casefold())
        return self._holder(kind, value)

    def api_key_ids_of(self, owner_id: UUID) -> list[UUID]:
        """The owner's live (unrevoked) keys."""
        return self._key_ring(owner_id).key_ids

    def head_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    # ---- reservations -----------------------------------------------------------------------

    def _email_key(self, email: str) -> str:
        """A keyed hash of the normalised address: reservations never hold the e-mail itself."""
        return hmac.new(self._email_pepper, normalise_email(email).encode(), hashlib.sha256).hexdigest()

    def _reservation(self, kind: str, value: str) -> Reservation | None:
        try:
            reservation: Aggregate = self._repository_get(reservation_id(kind, value))
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

    def _release_email(self, user: User) -> list[Aggregate]:
        reservation = self._reservation("email", self._email_key(user.email_address))
        if reservation is None or reservation.owner_id != user.id:
            return []
        reservation.release()
        return [reservation]

    def _key_ring(self, owner_id: UUID) -> KeyRing:
        try:
            ring: Aggregate = self._repository_get(key_ring_id(owner_id))
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
        return [*keys, ring] if ring.pending_events else keys

    # ---- load, change, save -----------------------------------------------------------------

    def _get(
        self, cls: type[T], aggregate_id: UUID, missing: type[Exception], *, version: int | None = None
    ) -> T:
        try:
            aggregate: Aggregate = self._repository_get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise missing(aggregate_id) from None
        if not isinstance(aggregate, cls):
            raise missing(aggregate_id)
        return aggregate

    def _change_user(
        self, user_id: UUID, change: Callable[[User], object], expected_version: int | None = None
    ) -> CommandResult[User]:
        def apply(user: User) -> list[Aggregate]:
            change(user)
            return []

        return self._change(User, user_id, UserNotFoundError, apply, expected_version)

    def _change(
        self,
        cls: type[T],
        aggregate_id: UUID,
        missing: type[Exception],
        change: Callable[[T], list[Aggregate]],
        expected_version: int | None,
    ) -> CommandResult[T]:
        """Load, change (``change`` returns the other aggregates to save with it), save.

        A version conflict is retried on fresh state, unless the client named the version it
        expected and the aggregate has moved past it (then it is theirs to resolve: 412). A
        conflict on a reservation or key ring is retried too, and so ends as the rule it broke.
        """

        def attempt() -> CommandResult[T]:
            aggregate = self._get(cls, aggregate_id, missing)
            if expected_version is not None and aggregate.version != expected_version:
                raise VersionMismatchError(expected_version, aggregate.version)
            return self._save(aggregate, *change(aggregate))

        return with_retries(attempt)

    def _save(self, main: T, *others: Aggregate) -> CommandResult[T]:
        """Every aggregate the command touched, in one atomic append; the result carries ``main``
        as saved, so the caller answers with exactly the state this append produced."""
        generation = self.aggregates.generation if self.aggregates is not None else 0
        recordings = self.save(main, *others)
        if self.aggregates is not None:
            # As they are now stored: the next command needs no read. Kept as they are (nothing
            # changes an aggregate after its save; every read takes a copy).
            for saved in (main, *others):
                self.aggregates.put(saved, generation)  # type: ignore[arg-type]
        position = max((r.notification.id for r in recordings), default=None)
        return CommandResult(
            main.id, position if position is not None else self.head_position(), main.version, main
        )
