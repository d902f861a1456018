"""A circuit breaker for the database: while it is down, fail fast with 503 instead of letting
every request wait on connection timeouts; let one request probe now and then; close again as
soon as one succeeds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from eventstore.database import DATABASE_UNAVAILABLE

__all__ = ["DATABASE_UNAVAILABLE", "DatabaseBreaker"]
logger = logging.getLogger("ledgerline.api")


class DatabaseBreaker:
    """Opens at the first "database unavailable" error; while open, requests are refused at
    once. A background probe checks the database every ``cool_down`` seconds with a short
    timeout and closes the breaker (after ``recover``) as soon as it answers."""

    def __init__(
        self,
        *,
        probe: Callable[[], bool],
        recover: Callable[[], None],
        cool_down: float = 1.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_change`` is told True when the breaker opens, False when it closes (the metrics)."""
        self.probe, self.recover, self.cool_down = probe, recover, cool_down
        self.on_change = on_change
        self._open = threading.Event()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        return not self._open.is_set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def failed(self) -> None:
        with self._lock:
            if self._open.is_set():
                return
            self._open.set()
        if self.on_change is not None:
            self.on_change(True)
        threading.Thread(target=self._watch, name="database-probe", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(self.cool_down)
            try:
                if self.probe():
                    self.recover()
                    self._open.clear()
                    if self.on_change is not None:
                        self.on_change(False)
                    return
            except Exception as error:  # still down
                logger.info("database still unavailable: %s", type(error).__name__)
