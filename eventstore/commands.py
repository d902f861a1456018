"""What commands return, and how they are retried after a version conflict."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from domain.api_keys import ApiKey
from domain.errors import ConcurrentChangeError
from domain.users import User

R = TypeVar("R")
A = TypeVar("A", bound=Aggregate)
UNCHANGED: Any = object()  # "leave this field as it is" in partial updates
RETRIES = 20


@dataclass(frozen=True)
class CommandResult(Generic[A]):
    id: UUID
    position: int  # global position of the last event written (read-your-writes)
    version: int  # the aggregate's version afterwards (ETag / If-Match)
    # The aggregate as the command saved it: responses are built from it, not from a reload
    # (which could show someone else's later change, or a cache entry from before the save).
    aggregate: A = field(repr=False, compare=False)


@dataclass(frozen=True)
class IssuedKey:
    result: CommandResult[ApiKey]
    key: str = field(repr=False)  # the secret, shown to its owner once


@dataclass(frozen=True)
class VerificationRequest:
    result: CommandResult[User]
    token: str = field(repr=False)  # to mail to the user; only its digest is stored


@dataclass(frozen=True)
class VerifiedKey:
    key_id: UUID
    owner_id: UUID
    owner_is_superuser: bool
    permissions: dict[str, bool]


def utcnow() -> datetime:
    return datetime.now(UTC)


_fresh: ContextVar[bool] = ContextVar("ledgerline_fresh_reads", default=False)


def reads_fresh() -> bool:
    """Whether reads must come from the store (a retry), not from the process's cache."""
    return _fresh.get()


@contextmanager
def fresh_reads(fresh: bool = True) -> Iterator[None]:
    token = _fresh.set(fresh or _fresh.get())
    try:
        yield
    finally:
        _fresh.reset(token)


def with_retries(attempt: Callable[[], R]) -> R:
    """Run ``attempt`` on the state this process holds; after a version conflict (someone else
    wrote first, or the cache was behind) run it again at once on state read from the store,
    then after a random, growing pause. The caller sees a conflict only if it persists."""
    for n in range(RETRIES):
        try:
            with fresh_reads(n > 0):
                return attempt()
        except IntegrityError:
            if n:
                time.sleep(random.uniform(0, 0.002 * 2 ** min(n - 1, 5)))  # noqa: S311 (jitter, not crypto)
    raise ConcurrentChangeError("too many concurrent changes; try again")
