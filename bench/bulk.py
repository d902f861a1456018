"""Bulk data for the benchmarks, written without going through one HTTP call per event.

``write_log``: users with year-long histories (registration, verification, profile changes,
logins and failed logins, a key with its usage and revocation), made by the domain's own
aggregates and methods, encoded by the application's own mapper (personal data encrypted with
each user's data key, as in production) in worker processes, and loaded with ``COPY``; COPY
bypasses the recorder, so the log's Merkle tree is then extended over them
(``eventstore.audit_chain.tree.backfill``, timed) before anything else appends. Events carry spread-out
timestamps (a bench clock), several actors and addresses, so audit filters select realistic
shares. There are no reservations or key rings: these users exist for the read side only.

``write_history``: one user with a long history through ``Identity.save`` (snapshots included),
100 profile changes per append.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any
from uuid import UUID, uuid4

import psycopg

from domain.api_keys import ApiKey
from domain.audit import AuditContext, acting_as
from domain.base import LedgerAggregate
from domain.users import User
from domain.values import Lockout
from eventstore.api_key_tokens import generate_api_key
from eventstore.audit_chain.tree import backfill, stored_size
from eventstore.database import Database
from eventstore.identity import Identity
from ledgerline.bootstrap import build
from ledgerline.settings import Settings

PER_USER = 100  # events per bulk user (a few more when failed logins lock the account)
CHUNK_USERS = 100  # users whose events are interleaved in time and loaded per COPY
OPERATORS = 20
AGENTS = [
    "curl/8.5.0",
    "ledgerline-cli",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    "python-httpx/0.28",
]
SCOPES = {"users:read": True, "users:write": True, "api_keys:read": True}
LOCKOUT = Lockout()


@dataclass
class BulkLog:
    events: int
    seconds: float
    users: list[UUID]  # a sample of the bulk users
    operators: list[UUID]
    first: datetime
    last: datetime
    tree_size_before: int = 0  # leaves before the backfill (the events create-admin appended)
    tree_size: int = 0  # after it: every event of the log
    tree_seconds: float = 0.0  # the backfill's


class _Clock:
    """Hands out the next prepared timestamp to each event the domain triggers."""

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.last = datetime.now(UTC)

    def __call__(self) -> datetime:
        if self.times:
            self.last = self.times.pop()
        return self.last


@contextmanager
def _bench_clock(clock: _Clock) -> Iterator[None]:
    LedgerAggregate.Event.create_timestamp = staticmethod(clock)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del LedgerAggregate.Event.create_timestamp


def write_log(env: dict[str, str], url: str, count: int, *, seed: int = 6) -> BulkLog:
    """``count`` events (about): chunks of ``CHUNK_USERS`` users made and encoded by ``WORKERS``
    processes, loaded in time order with one COPY per chunk; then the tree is extended over them."""
    operators = [uuid4() for _ in range(OPERATORS)]
    last = datetime.now(UTC) - timedelta(hours=1)
    first = last - timedelta(days=365)
    users_total = max(1, count // PER_USER)
    slot = (last - first) / users_total
    chunks = [
        _Chunk(n, start, min(CHUNK_USERS, users_total - start), first + slot * start, slot, operators,
               max(1, users_total // 200), seed)
        for n, start in enumerate(range(0, users_total, CHUNK_USERS))
    ]  # fmt: skip
    written, sample = 0, []
    started = time.perf_counter()
    context = get_context("spawn")
    with (
        ProcessPoolExecutor(WORKERS, mp_context=context, initializer=_start_worker, initargs=(env,)) as pool,
        psycopg.connect(url) as conn,
    ):
        for rows, chosen in pool.map(_encode_chunk, chunks):
            with conn.cursor().copy(COPY_EVENTS) as copy:
                copy.set_types(["uuid", "int8", "text", "bytea"])
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            written += len(rows)
            sample += chosen
    seconds = time.perf_counter() - started
    before, size, tree_seconds = _extend_tree(url)
    return BulkLog(written, seconds, sample, operators, first, last, before, size, tree_seconds)


def _extend_tree(url: str) -> tuple[int, int, float]:
    """``backfill`` over the COPY-loaded events (one transaction, the events table locked):
    leaves before, leaves after, seconds."""
    engine = Database(url).create_engine()
    try:
        with engine.connect() as conn:
            before = stored_size(conn)
        started = time.perf_counter()
        with engine.begin() as conn:
            size = backfill(conn)
        return before, size, time.perf_counter() - started
    finally:
        engine.dispose()


COPY_EVENTS = (
    "COPY identity_events (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
)
WORKERS = max(1, os.cpu_count() or 1)
_worker: dict[str, Identity] = {}


@dataclass(frozen=True)
class _Chunk:
    number: int
    first_user: int
    users: int
    start: datetime
    slot: timedelta  # each user's share of the time line
    operators: list[UUID]
    sample_every: int
    seed: int


def _start_worker(env: dict[str, str]) -> None:
    _worker["identity"] = build(Settings.from_env(env)).identity


def _encode_chunk(chunk: _Chunk) -> tuple[list[tuple[Any, ...]], list[UUID]]:
    """A chunk's users, their events interleaved in time and encoded as stored events."""
    identity = _worker["identity"]
    rng = random.Random(chunk.seed * 1_000_003 + chunk.number)
    window = (chunk.start, chunk.start + chunk.slot * chunk.users)
    clock, events, sample = _Clock(), [], []
    with _bench_clock(clock):
        for n in range(chunk.first_user, chunk.first_user + chunk.users):
            user_events = _history(n, rng, clock, window, chunk.operators)
            events += user_events
            if n % chunk.sample_every == 0:
                sample.append(user_events[0].originator_id)
    events.sort(key=lambda e: e.timestamp)
    rows = []
    for event in events:
        stored = identity.mapper.to_stored_event(event)
        rows.append((stored.originator_id, stored.originator_version, stored.topic, stored.state))
    return rows, sample


def _history(
    n: int, rng: random.Random, clock: _Clock, window: tuple[datetime, datetime], operators: list[UUID]
) -> list[Any]:
    """One user's events: the domain's own methods, each under the audit context of who did it."""
    span = (window[1] - window[0]).total_seconds()
    clock.times = sorted(
        (window[0] + timedelta(seconds=rng.uniform(0, span)) for _ in range(PER_USER + 10)), reverse=True
    )
    user_id, key_id = uuid4(), uuid4()
    operator = AuditContext(
        actor_id=rng.choice(operators),
        actor_type="user",
        credential_id=uuid4(),
        request_id=uuid4().hex,
        ip_address=f"10.0.{rng.randrange(4)}.{rng.randrange(1, 255)}",
        user_agent=AGENTS[1],
    )
    own_ip = f"192.0.2.{rng.randrange(1, 255)}"

    def itself() -> AuditContext:
        return AuditContext(
            actor_id=user_id,
            actor_type="user",
            credential_id=key_id,
            request_id=uuid4().hex,
            ip_address=own_ip,
            user_agent=rng.choice(AGENTS),
        )

    anonymous = AuditContext(actor_type="anonymous", ip_address=own_ip, user_agent=AGENTS[2])
    usage = AuditContext(actor_type="system", request_id="usage-flush")
    with acting_as(operator):
        user = User.register(
            user_id=user_id,
            username=f"bulk{n}",
            email=f"bulk{n}@example.com",
            password_hash="$argon2id$v=19$m=19456,t=2,p=1$bulk$bulk",
            full_name=f"Bulk User {n}",
        )
        user.verify()
    with acting_as(itself()):
        new_key = generate_api_key()
        api_key = ApiKey.issue(
            key_id=key_id,
            owner_id=user_id,
            owner_is_superuser=False,
            name="bulk",
            description=None,
            key_prefix=new_key.key_prefix,
            digest=new_key.digest,
            permissions=SCOPES,
            expires_at=None,
            now=clock.times[-1] if clock.times else clock.last,
        )
    for step in range(PER_USER - 4):
        roll = rng.random()
        now = clock.times[-1] if clock.times else clock.last
        if roll < 0.60:
            with acting_as(itself() if rng.random() < 0.7 else operator):
                user.update_profile(full_name=f"Bulk User {n} ({step})")
        elif roll < 0.75:
            with acting_as(anonymous):
                if user.is_locked(now):
                    user.unlock(now)
                else:
                    user.record_login(now)
        elif roll < 0.80:
            with acting_as(anonymous):
                user.record_failed_login("bad_password", now, LOCKOUT)
        elif roll < 0.98:
            with acting_as(usage):
                api_key.record_usage(count=rng.randrange(1, 500), last_used_at=now, last_used_ip=own_ip)
        elif roll < 0.99:
            with acting_as(itself()):
                user.change_email(f"bulk{n}.{step}@example.com")
        else:
            with acting_as(itself()):
                user.change_password(f"$argon2id$v=19$m=19456,t=2,p=1$bulk{step}$bulk")
    with acting_as(itself()):
        api_key.revoke("bulk history ends")
    return [*user.collect_events(), *api_key.collect_events()]


def write_history(identity: Identity, user_id: UUID, count: int, *, per_save: int = 100) -> float:
    """``count`` profile changes to one user, ``per_save`` per atomic append; returns seconds."""
    started, written = time.perf_counter(), 0
    with acting_as(AuditContext(actor_type="system", request_id="bench-history")):
        while written < count:
            user = identity.get_user(user_id)
            batch = min(per_save, count - written)
            for i in range(batch):
                user.update_profile(full_name=f"History {written + i}")
            identity.save(user)
            written += batch
    return time.perf_counter() - started


def users_with_keys(identity: Identity, prefix: str, count: int, password: str) -> list[tuple[UUID, str]]:
    """``count`` users (password hashed at the configured Argon2 parameters), each with one key
    that may read and change its owner and their keys."""
    made = []
    with acting_as(AuditContext(actor_type="system", request_id="bench-setup")):
        for n in range(count):
            user_id = identity.register_user(
                username=f"{prefix}{n}", email=f"{prefix}{n}@example.com", password=password
            ).id
            scopes = {**SCOPES, "api_keys:write": True}
            made.append((user_id, identity.issue_api_key(user_id, name="bench", permissions=scopes).key))
    return made
