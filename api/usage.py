"""API-key usage, counted in memory and flushed as one batched event per key.

No event-store write per request: each process adds up uses per key and, every few seconds
and at shutdown, appends one ``ApiKey.UsageRecorded`` per key with the exact count. A flush that
fails keeps its counts for the next one, so nothing is lost while the database is away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.errors import ApiKeyNotFoundError
from eventstore.identity import Identity
from projections.runner import ErrorSummary

logger = logging.getLogger("ledgerline.usage")


@dataclass
class _Tally:
    count: int
    last_used_at: datetime
    last_used_ip: str | None


class UsageRecorder(threading.Thread):
    def __init__(
        self,
        identity: Identity,
        stop: threading.Event,
        interval: float = 2.0,
        on_backlog: Callable[[int], None] | None = None,
    ) -> None:
        """``on_backlog`` is told after each flush how many keys' uses still wait (the metrics)."""
        super().__init__(name="usage-flusher", daemon=True)
        self.identity, self.stop, self.interval = identity, stop, interval
        self.on_backlog = on_backlog
        self._tallies: dict[UUID, _Tally] = {}
        self._lock = threading.Lock()

    def count(self, key_id: UUID, at: datetime, ip: str | None) -> None:
        with self._lock:
            tally = self._tallies.get(key_id)
            if tally is None:
                self._tallies[key_id] = _Tally(1, at, ip)
            else:
                tally.count += 1
                if at >= tally.last_used_at:
                    tally.last_used_at, tally.last_used_ip = at, ip

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.flush()
        self.flush()  # shutdown: nothing counted is lost

    def flush(self) -> None:
        with self._lock:
            pending, self._tallies = self._tallies, {}
        for key_id, tally in pending.items():
            try:
                self.identity.record_api_key_usage(  # as the system (USAGE_RECORDER)
                    key_id,
                    count=tally.count,
                    last_used_at=tally.last_used_at,
                    last_used_ip=tally.last_used_ip,
                )
            except ApiKeyNotFoundError:
                continue
            except Exception as error:  # its type only: an error's text may carry the stored values
                summary = ErrorSummary.of(error)
                logger.warning(
                    "could not record usage of %s; keeping it for the next flush (%s)", key_id, summary
                )
                self._merge_back(key_id, tally)
        if self.on_backlog is not None:
            with self._lock:
                waiting = len(self._tallies)
            self.on_backlog(waiting)

    def _merge_back(self, key_id: UUID, tally: _Tally) -> None:
        with self._lock:
            current = self._tallies.get(key_id)
            if current is None:
                self._tallies[key_id] = tally
            else:
                current.count += tally.count
                if tally.last_used_at > current.last_used_at:
                    current.last_used_at, current.last_used_ip = tally.last_used_at, tally.last_used_ip
