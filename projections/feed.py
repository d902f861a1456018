"""One reader per process: the notification log read once and decoded once for every projection
the process leads.

Every projection thread asks the feed for the entries after its own position. The feed keeps a
window of the newest entries it read (decoded for the topics any of its projections want); a
follower inside the window is served from it, and the one that reaches the window's end reads
the next page for everybody, under the feed's lock, so the others wait for that read instead of
repeating it. A follower behind the window (a standby taking over, a projection held back by a
failure) reads and decodes on its own, without disturbing the window; one past its end moves
it. Each projection still commits its rows and its position in its own transaction: the feed
only saves the reading and the decoding.

The window is safe to keep because positions are committed in order (the store locks the table
for each insert): the entries after a position, once read, are all there will ever be up to the
last one read.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eventstore.identity import Identity
from projections.base import Projection

WINDOW = 5000  # entries kept: a few batches of each follower


@dataclass(frozen=True, slots=True)
class Entry:
    """A notification and, when a projection wants its topic and it decoded, its event. An
    event that failed to decode is left None: the projection that needs it decodes it again
    and meets the error itself (its handling names the position)."""

    position: int
    topic: str
    notification: Any
    event: Any | None


def decoded_topics(projections: Iterable[Projection]) -> frozenset[str]:
    """The topics a feed decodes for ``projections`` (those that read stored events need none)."""
    return frozenset().union(*(p.topics for p in projections if not p.reads_stored))


class Feed:
    def __init__(self, identity: Identity, topics: frozenset[str], *, window: int = WINDOW) -> None:
        self.identity = identity
        self.topics = topics
        self.window = window
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._positions: list[int] = []
        self._start = 0  # the window holds every entry in (start, end]
        self._end: int | None = None  # None: no window yet

    def after(self, position: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries after ``position``, in position order."""
        with self._lock:
            behind = self._end is not None and position < self._start
            if not behind:
                if self._end is None or position > self._end:
                    self._restart(position, limit)
                found = self._from_window(position, limit)
                if len(found) < limit and self._extend(limit):
                    behind = position < self._start  # the window moved past it (under 2 pages)
                    found = [] if behind else self._from_window(position, limit)
        # Behind the window: read on its own, without keeping the others waiting for it.
        return self._read(position, limit) if behind else found

    def decode(self, entry: Entry) -> Any:
        """The entry's event (decoded here if the feed did not)."""
        if entry.event is not None:
            return entry.event
        return self.identity.mapper.to_domain_event(entry.notification)

    def _from_window(self, position: int, limit: int) -> list[Entry]:
        first = bisect_right(self._positions, position)
        return self._entries[first : first + limit]

    def _restart(self, position: int, limit: int) -> None:
        self._entries, self._positions = [], []
        self._start = self._end = position
        self._extend(limit)

    def _extend(self, limit: int) -> bool:
        """Read the page after the window's end into it; whether there was one."""
        assert self._end is not None
        page = self._read(self._end, limit)
        if not page:
            return False
        self._entries += page
        self._positions += [entry.position for entry in page]
        self._end = page[-1].position
        surplus = len(self._entries) - self.window
        if surplus > 0:
            self._start = self._positions[surplus - 1]
            del self._entries[:surplus], self._positions[:surplus]
        return True

    def _read(self, position: int, limit: int) -> list[Entry]:
        notifications = self.identity.recorder.select_notifications(position, limit, inclusive_of_start=False)
        return [Entry(n.id, n.topic, n, self._decoded(n)) for n in notifications]

    def _decoded(self, notification: Any) -> Any | None:
        if notification.topic not in self.topics:
            return None
        try:
            return self.identity.mapper.to_domain_event(notification)
        except Exception:  # the projection that needs it decodes it again and meets the error
            return None
