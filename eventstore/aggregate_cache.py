"""The process's aggregates in memory, each as of a version, and what the stream says of them.

A process that follows the event stream (``api.follower.StreamFollower``) tells the cache the
newest version of every aggregate it reads there (``seen``); an entry older than that is dropped
at once, and a load that raced with it is not kept (``put`` refuses a version older than the
newest seen). So once the follower has reached a position, every entry is current as of that
position: a read needs no query, and a command decides on the entry as it is and lets the
append's unique (id, version) check whether someone else wrote first (``eventstore.commands``
then retries on state read fresh from the store).

Without a follower (the CLI, the projector, tests of the store alone) the cache is never
trusted: every read brings the entry up to date from the store first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from uuid import UUID

from eventsourcing.domain import Aggregate

REMEMBERED = 200_000  # newest versions kept; beyond, they are forgotten and older loads refused


class AggregateCache:
    def __init__(self, maxsize: int = 10_000) -> None:
        self._entries: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._newest: dict[UUID, int] = {}  # id -> newest version the follower has seen
        self._lock = threading.Lock()
        self._maxsize = max(1, maxsize)
        self._erased: set[UUID] = set()  # data subjects erased: nothing of theirs is kept
        self.generation = 0  # moves when _newest is forgotten: loads begun before are not kept
        self.followed = False  # set by the process's follower: entries are then trusted

    def current(self, aggregate_id: UUID) -> Aggregate | None:
        """The entry, if it is current as of the follower's position (shared: do not change it)."""
        if not self.followed:
            return None
        with self._lock:
            entry = self._entries.get(aggregate_id)
            if entry is not None:
                self._entries.move_to_end(aggregate_id)
            return entry

    def entry(self, aggregate_id: UUID) -> Aggregate | None:
        """The entry whatever its age: a base to bring up to date from the store."""
        with self._lock:
            return self._entries.get(aggregate_id)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._newest.clear()
            self.generation += 1

    def erase_subject(self, subject_id: UUID) -> None:
        """The subject's data key is (being) destroyed: drop every entry holding their personal
        data, and keep none from now on. A saved aggregate holds it in the clear (a loaded one
        decrypts on each read), so after an erasure it must be read back from the store."""
        with self._lock:
            self._erased.add(subject_id)
            for aggregate_id in [i for i, a in self._entries.items() if _subject(a) == subject_id]:
                del self._entries[aggregate_id]

    def put(self, aggregate: Aggregate, generation: int) -> None:
        """Keep ``aggregate`` (read or saved while the cache was at ``generation``) unless the
        stream has shown a newer version of it, or the versions seen since were forgotten."""
        with self._lock:
            if generation != self.generation or self._newest.get(aggregate.id, 0) > aggregate.version:
                return
            if _subject(aggregate) in self._erased:
                return
            held = self._entries.get(aggregate.id)
            if held is not None and held.version > aggregate.version:
                return
            self._entries[aggregate.id] = aggregate
            self._entries.move_to_end(aggregate.id)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)

    def seen(self, versions: Mapping[UUID, int]) -> None:
        """The follower read these aggregates' newest versions in the stream."""
        with self._lock:
            if len(self._newest) + len(versions) > REMEMBERED:
                self._newest.clear()
                self.generation += 1
            for aggregate_id, version in versions.items():
                if version > self._newest.get(aggregate_id, 0):
                    self._newest[aggregate_id] = version
                entry = self._entries.get(aggregate_id)
                if entry is not None and entry.version < version:
                    del self._entries[aggregate_id]


def _subject(aggregate: Aggregate) -> UUID | None:
    """Whose personal data the aggregate may hold (``domain.base``)."""
    return getattr(aggregate, "data_subject_id", None)
