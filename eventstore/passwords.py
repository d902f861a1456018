"""Argon2id password hashing with parameters from settings, and no timing oracle."""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

logger = logging.getLogger("ledgerline.passwords")


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
        self._here = threading.BoundedSemaphore(self.count)  # never more in this process than there
        self._directory = directory
        self._paths: list[Path] | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._here:
            paths = self._shared()
            if paths is None:
                yield
                return
            with _one_of(paths):
                yield

    def _shared(self) -> list[Path] | None:
        """The lock files, the directory made on first use; one that cannot be made (a read-only
        working directory in a container) leaves the slots to this process, said once."""
        if self._paths is None and self._directory is not None:
            try:
                self._directory.mkdir(parents=True, exist_ok=True)
                self._paths = [self._directory / f"hashing-slot-{n}.lock" for n in range(self.count)]
            except OSError as error:
                logger.warning(
                    "hashing slots are this process's alone: %s cannot be made (%s)",
                    self._directory, type(error).__name__,
                )  # fmt: skip
                self._directory = None
        return self._paths


@contextmanager
def _one_of(paths: list[Path]) -> Iterator[None]:
    """The first slot found free, trying each in turn and pausing 1 to 2 ms between rounds (a
    wait on one slot's lock would miss another that frees first)."""
    while True:
        for path in random.sample(paths, len(paths)):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            try:
                yield
                return
            finally:
                os.close(fd)  # releases the lock
        time.sleep(random.uniform(0.001, 0.002))  # noqa: S311 (jitter, not crypto)


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
