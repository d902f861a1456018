"""What commands return, and how they are retried after a version conflict."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.errors import ConcurrentChangeError

R = TypeVar("R")
UNCHANGED: Any = object()  # "leave this field as it is" in partial updates
RETRIES = 20


@dataclass(frozen=True)
class CommandResult:
    id: UUID
    position: int  # global position of the last event written (read-your-writes)
    version: int  # the aggregate's version afterwards (ETag / If-Match)


@dataclass(frozen=True)
class IssuedKey:
    result: CommandResult
    key: str = field(repr=False)  # the secret, shown to its owner once


@dataclass(frozen=True)
class VerificationRequest:
    result: CommandResult
    token: str = field(repr=False)  # to mail to the user; only its digest is stored


@dataclass(frozen=True)
class VerifiedKey:
    key_id: UUID
    owner_id: UUID
    owner_is_superuser: bool
    permissions: dict[str, bool]


def utcnow() -> datetime:
    return datetime.now(UTC)


def with_retries(attempt: Callable[[], R]) -> R:
    """Run ``attempt``; after a version conflict pause a random, growing moment and run it again
    on fresh state. The caller sees a conflict only if it persists."""
    for n in range(RETRIES):
        try:
            return attempt()
        except IntegrityError:
            time.sleep(random.uniform(0, 0.002 * 2 ** min(n, 5)))  # noqa: S311 (jitter, not crypto)
    raise ConcurrentChangeError("too many concurrent changes; try again")
