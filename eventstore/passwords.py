"""Argon2id password hashing with parameters from settings, and no timing oracle."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True)
class Argon2Parameters:
    """Defaults are OWASP's minimum for Argon2id: m=19 MiB, t=2, p=1."""

    memory_kib: int = 19 * 1024
    time_cost: int = 2
    parallelism: int = 1


class Passwords:
    """At most ``slots`` hashes run at once (default: one per core): more would not hash faster,
    only take every core from the requests that do not hash."""

    def __init__(self, parameters: Argon2Parameters | None = None, *, slots: int | None = None) -> None:
        parameters = parameters or Argon2Parameters()
        self._slots = threading.BoundedSemaphore(slots or os.cpu_count() or 1)
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
            type=Type.ID,
        )
        # Checked when the user is unknown, so that costs one hash too.
        self._dummy_hash = self._hasher.hash("ledgerline-timing-equaliser")

    def hash(self, password: str) -> str:
        with self._slots:
            return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            with self._slots:
                return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_nothing(self, password: str) -> None:
        """Spend one verification for an unknown user, then fail like a wrong password."""
        self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
