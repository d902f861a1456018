"""Argon2id password hashing with parameters from settings, and no timing oracle."""

from __future__ import annotations

import fcntl
import os
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True)
class Argon2Parameters:
    """Defaults are OWASP's minimum for Argon2id: m=19 MiB, t=2, p=1."""

    memory_kib: int = 19 * 1024
    time_cost: int = 2
    parallelism: int = 1


def hashing_cores(cores: int | None = None) -> int:
    """The cores a host gives to password hashing by default: all but one, which stays for
    every other request (a login flood must not stall reads)."""
    return max(1, (cores or os.cpu_count() or 1) - 1)


class HashingSlots:
    """At most ``count`` hashes at once on this host: a thread holds one of ``count`` slots,
    each an exclusive lock on a file in ``directory``, so the API processes of one host share
    them (without a directory, the slots are this process's alone)."""

    def __init__(self, count: int, directory: Path | None = None) -> None:
        self.count = max(1, count)
        self._threads = threading.BoundedSemaphore(self.count)  # never more here than there
        self._paths = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._paths = [directory / f"hashing-slot-{n}.lock" for n in range(self.count)]

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            if self._paths is None:
                yield
                return
            with _one_of(self._paths):
                yield


@contextmanager
def _one_of(paths: list[Path]) -> Iterator[None]:
    """A free slot if there is one, else the wait for a random one."""
    order = random.sample(paths, len(paths))
    for n, path in enumerate(order):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if n == len(order) - 1 else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield
            return
        finally:
            os.close(fd)  # releases the lock


class Passwords:
    """Hashes run in ``slots`` (default: ``hashing_cores()`` slots of this process): more at once
    would not hash faster, only take every core from the requests that do not hash."""

    def __init__(
        self, parameters: Argon2Parameters | None = None, *, slots: HashingSlots | None = None
    ) -> None:
        parameters = parameters or Argon2Parameters()
        self.slots = slots or HashingSlots(hashing_cores())
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
            type=Type.ID,
        )
        # Checked when the user is unknown, so that costs one hash too.
        self._dummy_hash = self._hasher.hash("ledgerline-timing-equaliser")

    def hash(self, password: str) -> str:
        with self.slots.held():
            return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            with self.slots.held():
                return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_nothing(self, password: str) -> None:
        """Spend one verification for an unknown user, then fail like a wrong password."""
        self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
