"""What handlers work with, built once per app: the event store, the read side, credentials."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar
from uuid import UUID

import anyio
import psycopg
from litestar.exceptions import ServiceUnavailableException, ValidationException
from sqlalchemy.engine import Engine

from api.follower import StreamFollower
from api.metrics import Metrics
from api.rate_limit import RateLimiter
from api.schemas import Pagination, in_utc, storable_text
from api.security import CredentialCache
from api.tokens import AccessTokens
from api.usage import UsageRecorder
from domain.audit import current_audit_context
from eventstore.audit_chain.checkpoints import CheckpointKeys
from eventstore.database import Database
from eventstore.identity import Identity
from eventstore.personal_data import Sealer
from projections.audit_log.evidence import AuditEvidence
from projections.audit_log.queries import MAX_POSITION
from projections.read_side import positions
from projections.runner import ErrorSummary
from projections.streaming.targets import TargetPolicy

T = TypeVar("T")
logger = logging.getLogger("ledgerline.api")
_caller_position: ContextVar[int] = ContextVar("ledgerline_caller_position", default=0)
# Blocking calls (sync handlers, credential lookups) share anyio's thread pool, of this many
# threads (set at start-up); routes that hash a password have as many of their own.
HANDLER_THREADS = min(32, (os.cpu_count() or 1) + 4)
WAITERS = max(1, HANDLER_THREADS // 2)  # that may wait for a position at once: half stay for the rest
FIRST_PAUSE, LONGEST_PAUSE = 0.01, 0.2  # seconds between checks of a waiting request


@dataclass
class Services:
    identity: Identity
    engine: Engine
    sealer: Sealer
    tokens: AccessTokens
    version: str = "0"
    read_timeout: float = 3.0
    ready_max_lag: int = 1000
    ready_stall_seconds: float = 30.0  # behind and not moving this long: not ready
    checkpoint_seconds: float = 1.0  # a checkpoint is due this long after the last (not a stall before)
    allow_registration: bool = True
    usage_flush_seconds: float = 2.0
    login_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(10))
    verify_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(600, "key verifications"))
    usage: UsageRecorder | None = None  # counts key uses, set by ``create_app``
    credential_cache: CredentialCache = field(default_factory=CredentialCache)
    database: Database | None = None  # where the tree's stored records are read from
    checkpoint_keys: CheckpointKeys | None = None  # signs checkpoints and exports; the keys they may carry
    follower: StreamFollower | None = None  # this process's caches, set by ``create_app``
    measure: bool = True  # LEDGERLINE_METRICS: /metrics and the per-request counting
    metrics: Metrics | None = None  # set by ``create_app`` when ``measure``
    tracing: bool = False  # LEDGERLINE_TRACING (api.tracing)
    tracer_provider: Any = None  # tracing's; None: OTLP as the OTEL_* environment says
    stream_policy: TargetPolicy = field(default_factory=TargetPolicy)  # where webhooks may point
    waiting: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(WAITERS))
    _password_threads: anyio.CapacityLimiter | None = None

    async def with_password(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work`` (a route that hashes or verifies a password) in threads of its own: a
        login waiting for a hashing slot (``eventstore.passwords.HashingSlots``) never holds one
        of the threads every other request needs."""
        if self._password_threads is None:
            self._password_threads = anyio.CapacityLimiter(HANDLER_THREADS)
        return await anyio.to_thread.run_sync(work, *args, limiter=self._password_threads)

    @cached_property
    def audit_evidence(self) -> AuditEvidence:
        """Checks audit_log rows (a cache) against the stored events they come from."""
        assert self.database is not None, "built by ledgerline.bootstrap"
        return AuditEvidence(self.identity.mapper, self.database, self.sealer)

    def database_answers(self) -> bool:
        """A quick, separate check (1 s timeout) that the database takes connections again."""
        if self.engine.dialect.name == "postgresql":
            url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(url, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True

    def drop_dead_connections(self) -> None:
        """After a database error: forget pooled connections that died with the database, so
        the first request after its return connects at once instead of testing each one."""
        pool = getattr(getattr(self.identity.recorder, "datastore", None), "pool", None)
        try:
            if pool is not None:
                pool.check()
            self.engine.dispose()
        except Exception as error:  # still down: the next failure tries again
            logger.debug("could not clean the connection pools (%s)", ErrorSummary.of(error))

    def read_side_at(self, min_position: int | None, *, everyone: bool = False) -> None:
        """Wait until the read tables hold ``min_position`` and the caller's own last write
        (read-your-writes per caller: not the newest event written anywhere, so other clients'
        writes never hold a query up); 503 with Retry-After if they lag. A position beyond the
        last event is waited for too (it may be written by a process this one does not see yet,
        e.g. on a lagging replica), within the same ``read_timeout``. ``everyone``: a figure over
        every caller's events (usage statistics) waits for the head instead."""
        deadline = time.monotonic() + self.read_timeout
        own = self.identity.head_position() if everyone else self._own_writes()
        target = max(self._reachable(min_position) if min_position is not None else 0, own)

        def caught_up() -> bool:  # a read table never runs ahead of the store
            reached = positions(self.engine)
            return bool(reached) and min(reached.values()) >= target

        self._wait_until(caught_up, deadline, lambda: self._behind(target, "the read side is catching up"))

    def _own_writes(self) -> int:
        """The position of the caller's newest event: the actor's (as this process's follower,
        brought to the head when the request began, has read it) or the one the caller's last
        command answered with (its cookie, e.g. after an anonymous registration); without a
        follower, the head."""
        if self.follower is None:
            return self.identity.head_position()
        actor = current_audit_context().actor_id
        by_actor = 0 if actor is None else self.follower.last_write_of(actor)
        # A cookie names a position that exists (or that a forger wants waited for: not beyond
        # what this process has seen, so it costs no wait a real client would not).
        return max(by_actor, min(_caller_position.get(), self.follower.position))

    def store_at(self, min_position: int | None) -> None:
        """For reads of the event store: wait until it holds ``min_position`` and this process's
        follower has applied it (the read tables are not waited for). Without one there is
        nothing to wait for: every guarded request reached the head first (``CurrentState``)."""
        if min_position is None:
            return
        deadline = time.monotonic() + self.read_timeout
        target = self._reachable(min_position)
        self._wait_until(lambda: self.identity.head_position() >= target, deadline, self._not_written)
        if self.follower is not None:
            self.follower.catch_up(target)

    def _reachable(self, min_position: int) -> int:
        """The position to wait for; one so far beyond the head that this process does not
        expect to see it within the wait (more than ``ready_max_lag`` events, the lag a ready
        process may have) is refused at once instead of holding a worker thread."""
        if min_position > self.identity.head_position() + self.ready_max_lag:
            raise _unavailable("min_position is too far beyond the last event to wait for")
        return min_position

    def _wait_until(
        self, reached: Callable[[], bool], deadline: float, refusal: Callable[[], ServiceUnavailableException]
    ) -> None:
        """Check ``reached`` with pauses growing from 10 ms to 200 ms (a waiter costs the
        database a few queries a second, not a hundred); at most ``waiting``'s size of
        requests wait at once, so waiters cannot take every worker thread: others get a 503."""
        if reached():
            return
        if not self.waiting.acquire(blocking=False):
            raise _unavailable("too many requests are waiting for a position")
        try:
            pause = FIRST_PAUSE
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(pause, left))
                if reached():
                    return
                pause = min(2 * pause, LONGEST_PAUSE)
            raise refusal()
        finally:
            self.waiting.release()

    def _behind(self, target: int, why: str) -> ServiceUnavailableException:
        return self._not_written() if self.identity.head_position() < target else _unavailable(why)

    def _not_written(self) -> ServiceUnavailableException:
        return _unavailable("min_position is not written yet")


@contextmanager
def caller_has_seen(position: int) -> Iterator[None]:
    """The position of the caller's last command (its cookie), for ``read_side_at``."""
    token = _caller_position.set(position)
    try:
        yield
    finally:
        _caller_position.reset(token)


def _unavailable(why: str) -> ServiceUnavailableException:
    return ServiceUnavailableException(why, headers={"Retry-After": "1"})


def aware(name: str, moment: datetime | str | None) -> datetime | None:
    """Query-string times must carry their UTC offset (a bare local time is ambiguous); they
    come back in UTC, and one that UTC cannot represent (year 1 at +05:00) is refused."""
    if moment is None:
        return None
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.upper())  # RFC 3339 allows "t" and "z" too
        except ValueError as error:
            raise ValidationException(
                f"{name} is not a time", extra=[{"key": name, "message": "not an RFC 3339 time"}]
            ) from error
    if moment.tzinfo is None:
        raise ValidationException(
            f"{name} needs a UTC offset", extra=[{"key": name, "message": "add Z or +hh:mm"}]
        )
    if (utc := in_utc(moment)) is None:
        raise ValidationException(
            f"{name} is out of range", extra=[{"key": name, "message": "out of range in UTC"}]
        )
    return utc


def encode_cursor(sort_key: Any, row_id: UUID) -> str:
    value = sort_key.isoformat() if isinstance(sort_key, datetime) else sort_key
    return base64.urlsafe_b64encode(json.dumps([value, str(row_id)]).encode()).decode()


def decode_cursor(cursor: str, *, is_time: bool) -> tuple[Any, UUID]:
    """A cursor of ``encode_cursor``: what it holds goes into a query, so it must be a value
    the sort column can hold (an aware time UTC can represent, or storable text)."""
    try:
        value, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(value, str) or not isinstance(row_id, str) or not storable_text(value):
            raise ValueError("a cursor holds two strings")
        sort_key = _cursor_time(value) if is_time else value
        return sort_key, UUID(row_id)
    except (ValueError, TypeError, AttributeError, RecursionError) as error:
        raise ValidationException(
            "invalid cursor", extra=[{"key": "cursor", "message": "invalid cursor"}]
        ) from error


def _cursor_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    utc = None if moment.tzinfo is None else in_utc(moment)
    if utc is None:
        raise ValueError("a cursor's time is aware and within range in UTC")
    return utc


def encode_position_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([position]).encode()).decode()


def decode_position_cursor(cursor: str) -> int:
    """A cursor of ``encode_position_cursor``; anything else (or a position no event can have)
    is a 422."""
    try:
        (position,) = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if type(position) is not int or not 0 <= position <= MAX_POSITION:
            raise ValueError("a position cursor holds one position")
        return position
    except (ValueError, TypeError, AttributeError, RecursionError) as error:
        raise ValidationException(
            "invalid cursor", extra=[{"key": "cursor", "message": "invalid cursor"}]
        ) from error


def _sort_key_cursor(row: dict[str, Any]) -> str:
    return encode_cursor(row["sort_key"], row["id"])


def page_info(
    rows: list[dict[str, Any]],
    total: int,
    *,
    page: int,
    per_page: int,
    after: object,
    cursor_of: Callable[[dict[str, Any]], str] = _sort_key_cursor,
) -> Pagination:
    """The contract's pagination block; ``next_cursor`` continues after the last row shown."""
    shown = (page - 1) * per_page + len(rows)
    has_next = len(rows) == per_page and (after is not None or shown < total)
    return Pagination(
        page=page,
        per_page=per_page,
        total=total,
        has_next=has_next,
        has_prev=page > 1 or after is not None,
        next_cursor=cursor_of(rows[-1]) if has_next and rows else None,
    )
