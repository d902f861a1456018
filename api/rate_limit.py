"""Attempts per subject in a sliding one-minute window: logins (per client address and per
account) and key verifications (per calling credential and per client address).

Counted per process: with N API processes a client gets at most N times the limit (the
lockout in the event store still bounds password guesses per account across all of them).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from litestar.exceptions import TooManyRequestsException

from domain.users import normalise_email
from eventstore.identity import Identity

WINDOW = 60.0


def login_subject(identity: Identity, login: str) -> str:
    """What a login attempt counts against: the account it names, however it is spelled
    (username or e-mail, any case, surrounding space), so spellings share one budget."""
    user_id = identity.find_user_id(login)
    if user_id is not None:
        return f"user:{user_id}"
    return f"login:{normalise_email(login) if '@' in login else login.strip().casefold()}"


class RateLimiter:
    def __init__(self, per_minute: int, what: str = "login attempts") -> None:
        self.per_minute, self.what = per_minute, what
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, *subjects: str) -> None:
        """Count one attempt for each subject; refuse with 429 once any is over the limit."""
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self._lock:
            waits = [self._wait(subject, now) for subject in subjects]
            if any(waits):
                retry = math.ceil(max(waits))
                raise TooManyRequestsException(f"too many {self.what}", headers={"Retry-After": str(retry)})
            for subject in subjects:
                self._attempts.setdefault(subject, deque()).append(now)
            if len(self._attempts) > 100_000:  # forget idle clients
                for key in [k for k, q in self._attempts.items() if not q or now - q[-1] > WINDOW]:
                    del self._attempts[key]

    def _wait(self, subject: str, now: float) -> float:
        attempts = self._attempts.get(subject)
        if attempts is None:
            return 0.0
        while attempts and now - attempts[0] >= WINDOW:
            attempts.popleft()
        return WINDOW - (now - attempts[0]) if len(attempts) >= self.per_minute else 0.0
