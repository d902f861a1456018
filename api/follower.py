"""One follower per API process: reads the notification log from its position and applies what
each event changes to this process's memory, so all of it is current as of a known position.

- aggregates (``AggregateCache``): the newest version of every aggregate in the stream; an older
  cached copy is dropped (the next read loads it), so a cached copy is current as of the
  follower's position and reads and commands need no query for it;
- credentials (``CredentialCache``): a key issued, changed, rotated or revoked; a session ended;
  an owner deactivated, deleted, erased, demoted, or whose password changed;
- data keys (``DataKeyStore``): an erased subject's key is forgotten at once, from the event,
  even before the erasing process has destroyed the stored key;
- each actor's last write (``last_write_of``): what a list or audit query of theirs must wait
  for the read tables to reach (read-your-writes per caller, not per database).

Every guarded request first brings the follower to the head of the stream (``api.context``):
one ``max(id)`` query shared by the requests that arrived before it was sent, then, if the head
moved (any process's writes, this one's too), one read of the missing events on the event loop
(concurrent requests await it). So a request that starts after a change was answered by any
process sees it. The thread only keeps an idle process's memory from going stale between
requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from uuid import UUID

import msgspec
from eventsourcing.persistence import Notification

from api.head import ReadPage
from api.security import CredentialCache
from domain.sessions import Session
from domain.users import User
from eventstore.identity import Identity
from projections.api_keys.projection import ApiKeysProjection
from projections.runner import ErrorSummary

logger = logging.getLogger("ledgerline.api")
PAGE = 1000
ACTORS_REMEMBERED = 100_000

USER_CHANGES = ("Deactivated", "Activated", "Deleted", "Restored", "Erased", "SuperuserGranted",
                "SuperuserRevoked", "PasswordChanged", "PasswordReset")  # fmt: skip
CREDENTIAL_TOPICS = frozenset(
    [
        *(topic for topic in ApiKeysProjection.topics if not topic.endswith(".UsageRecorded")),
        Session.Revoked.TOPIC,
        *(getattr(User, name).TOPIC for name in USER_CHANGES),
    ]
)


class _Hex(msgspec.Struct):
    value: str = msgspec.field(name="_data_")


class _Envelope(msgspec.Struct):
    actor_id: _Hex | None = None


class _Audit(msgspec.Struct):
    envelope: _Envelope = msgspec.field(name="_data_")


class _Event(msgspec.Struct):
    """The one field of a stored event the follower reads (the audit envelope's actor)."""

    audit: _Audit | None = None


_actor_decoder = msgspec.json.Decoder(_Event)


def actor_of(state: bytes) -> UUID | None:
    try:
        audit = _actor_decoder.decode(state).audit
        actor = None if audit is None else audit.envelope.actor_id
        return None if actor is None else UUID(actor.value)
    except (msgspec.DecodeError, ValueError):
        return None  # not a shape this process can read: nothing to remember


class StreamFollower(threading.Thread):
    def __init__(
        self, identity: Identity, cache: CredentialCache, stop: threading.Event, interval: float = 0.2
    ) -> None:
        super().__init__(name="stream-follower", daemon=True)
        self.identity, self.cache, self.stop, self.interval = identity, cache, stop, interval
        self.position = identity.head_position()  # the caches start empty: nothing before matters
        self._lock = threading.Lock()
        self._last_writes: dict[UUID, int] = {}
        # Writes before the follower started, or forgotten since: assumed as new as they could be.
        self._forgotten_writes = self.position
        if identity.aggregates is not None:  # what was cached before nothing vouched for
            identity.aggregates.clear()
            identity.aggregates.followed = True

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.catch_up(self.identity.head_position())
            except Exception as error:  # the database may be away: keep following
                logger.warning(
                    "the stream follower could not read the event stream (%s)", ErrorSummary.of(error)
                )

    def catch_up(self, target: int) -> None:
        """Return once every event up to ``target`` is applied (positions are committed in order,
        so everything up to a head that was read is there to be read)."""
        if self.position >= target:
            return
        with self._lock:
            while self.position < target:
                page = self.identity.recorder.select_notifications(
                    self.position, PAGE, stop=target, inclusive_of_start=False
                )
                self._apply(page)
                self.position = target if len(page) < PAGE else page[-1].id

    async def reach(self, target: int, read_page: ReadPage) -> bool:
        """``catch_up`` on the event loop, reading with ``read_page`` (no worker thread); False
        when another thread is catching up at this moment (then wait for it in a thread)."""
        if self.position >= target:
            return True
        if not self._lock.acquire(blocking=False):
            return False
        try:
            while self.position < target:
                page = await read_page(self.position, target, PAGE)
                self._apply(page)
                self.position = target if len(page) < PAGE else page[-1].id
            return True
        finally:
            self._lock.release()

    def last_write_of(self, actor_id: UUID) -> int:
        """The position of the actor's newest event this follower has read; for an actor with
        none since the process started (or forgotten), the head when it started (or the newest
        forgotten position)."""
        return self._last_writes.get(actor_id, self._forgotten_writes)

    def _apply(self, page: Sequence[Notification]) -> None:
        versions: dict[UUID, int] = {}
        credentials: dict[UUID, int] = {}
        for notification in page:
            originator = UUID(str(notification.originator_id))
            versions[originator] = notification.originator_version
            if notification.topic in CREDENTIAL_TOPICS:
                credentials[originator] = notification.id
            if notification.topic == User.Erased.TOPIC:
                self.identity.data_keys.forget(originator)
                if self.identity.aggregates is not None:
                    self.identity.aggregates.erase_subject(originator)
            actor = actor_of(notification.state)
            if actor is not None:
                self._last_writes[actor] = notification.id
        if self.identity.aggregates is not None and versions:
            self.identity.aggregates.seen(versions)
        if credentials:
            self.cache.invalidate(credentials)
        if len(self._last_writes) > ACTORS_REMEMBERED:
            self._forgotten_writes = max(self._last_writes.values())
            self._last_writes.clear()
