"""One follower per API process: reads the notification log from its position and applies
what each event ends to this process's caches, so they are current as of a known position.

- credentials (``CredentialCache``): a key issued, changed, rotated or revoked; a session ended;
  an owner deactivated, deleted, erased, demoted, or whose password changed;
- data keys (``DataKeyStore``): an erased subject's key is forgotten at once, from the event,
  even before the erasing process has destroyed the stored key.
Aggregates need nothing here: the aggregate cache reads an aggregate's newer events on every get.

A request calls ``catch_up(head)`` before it uses a cache (``Authenticator``): whoever finds the
follower behind reads the missing events itself (one query; concurrent requests wait for it),
so a request that starts after a change was answered by any process sees it. The thread only
keeps an idle process's caches from going stale between requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from uuid import UUID

from eventsourcing.persistence import Notification

from api.security import CredentialCache
from domain.sessions import Session
from domain.users import User
from eventstore.identity import Identity
from projections.api_keys.projection import ApiKeysProjection
from projections.runner import ErrorSummary

logger = logging.getLogger("ledgerline.api")
PAGE = 1000

USER_CHANGES = ("Deactivated", "Activated", "Deleted", "Restored", "Erased", "SuperuserGranted",
                "SuperuserRevoked", "PasswordChanged", "PasswordReset")  # fmt: skip
FOLLOWED_TOPICS = [
    *(topic for topic in ApiKeysProjection.topics if not topic.endswith(".UsageRecorded")),
    Session.Revoked.TOPIC,
    *(getattr(User, name).TOPIC for name in USER_CHANGES),
]


class StreamFollower(threading.Thread):
    def __init__(
        self, identity: Identity, cache: CredentialCache, stop: threading.Event, interval: float = 0.2
    ) -> None:
        super().__init__(name="stream-follower", daemon=True)
        self.identity, self.cache, self.stop, self.interval = identity, cache, stop, interval
        self.position = identity.head_position()  # the caches start empty: nothing before matters
        self._lock = threading.Lock()

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
                    self.position, PAGE, stop=target, topics=FOLLOWED_TOPICS, inclusive_of_start=False
                )
                self._apply(page)
                self.position = target if len(page) < PAGE else page[-1].id

    def _apply(self, page: Sequence[Notification]) -> None:
        changed: dict[UUID, int] = {}
        for notification in page:
            originator = UUID(str(notification.originator_id))
            changed[originator] = notification.id
            if notification.topic == User.Erased.TOPIC:
                self.identity.data_keys.forget(originator)
        if changed:
            self.cache.invalidate(changed)
