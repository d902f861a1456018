"""Concurrent command throughput on PostgreSQL, with and without group commit, side by side.

Creates a scratch database, then measures for the same duration each, from THREADS threads of one
process:
  raw:            psycopg single-row INSERT + COMMIT, one connection per thread (the server's
                  commit rate: the baseline)
  update_profile: Identity.update_user (a profile change) on a user of the thread's own (load,
                  one event, append)
  issue_api_key:  Identity.issue_api_key for an owner of the thread's own (key + key ring +
                  digest reservation in one append)
  update_profile from 1 thread (a lone save must not get slower)
and the process's CPU time per update_profile command (Python runs on one core at a time, so this
bounds one process's rate). Each command runs with LEDGERLINE_GROUP_COMMIT=false (one transaction
and one table lock per save: the library's path) and with it true (concurrent saves gathered into
one transaction). The machine is shared and noisy, so this runs ROUNDS rounds, alternating which
setting goes first, and prints the median of each figure, its ratio to the raw baseline, and the
median of the on/off ratios taken within each round. Run: `python -m bench.group_commit`.
``LEDGERLINE_BENCH_THREADS`` (16), ``LEDGERLINE_BENCH_SECONDS`` (4) and ``LEDGERLINE_BENCH_ROUNDS``
(3) change the scale.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import psycopg

from eventstore.passwords import Argon2Parameters, Passwords
from ledgerline.bootstrap import Components, build
from ledgerline.settings import Settings

ADMIN_DSN = os.environ.get("LEDGERLINE_BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
SECONDS = float(os.environ.get("LEDGERLINE_BENCH_SECONDS", "4"))
THREADS = int(os.environ.get("LEDGERLINE_BENCH_THREADS", "16"))
ROUNDS = int(os.environ.get("LEDGERLINE_BENCH_ROUNDS", "3"))
FAST = Passwords(Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1))


def threaded_rate(operation: Callable[[int, int], object], threads: int = THREADS) -> float:
    """Operations per second of ``threads`` threads, each calling ``operation(thread, n)`` in a loop."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def run(thread: int) -> None:
        start.wait()
        n = 0
        while time.perf_counter() < deadline:
            operation(thread, n)
            n += 1
        counts[thread] = n

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    began = time.perf_counter()
    deadline = began + SECONDS
    start.wait()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - began)


def raw_rate(url: str) -> float:
    connections = [psycopg.connect(url) for _ in range(THREADS)]

    def insert(thread: int, _: int) -> None:
        conn = connections[thread]
        conn.execute("INSERT INTO raw_commits (body) VALUES (%s)", (b"x" * 300,))
        conn.commit()

    try:
        return threaded_rate(insert)
    finally:
        for conn in connections:
            conn.close()


def command_rates(url: str, *, group_commit: bool) -> dict[str, float]:
    settings = Settings.from_env(
        {
            "LEDGERLINE_DATABASE_URL": url,
            "LEDGERLINE_SECRET_KEY": "22" * 32,
            "LEDGERLINE_DATA_DIR": tempfile.mkdtemp(),
            "LEDGERLINE_POOL_SIZE": str(THREADS // 2 + 1),  # grows to twice this: a shared server
            "LEDGERLINE_GROUP_COMMIT": "true" if group_commit else "false",
        }
    )
    components: Components = build(settings, init=True, passwords=FAST)
    identity = components.identity
    try:
        tag = uuid.uuid4().hex[:6]
        users = [
            identity.register_user(
                username=f"b{tag}{i}", email=f"b{tag}{i}@example.com", password="Bench-pass-1"
            ).id
            for i in range(THREADS)
        ]
        wall, cpu = time.perf_counter(), time.process_time()
        profile = threaded_rate(lambda t, n: identity.update_user(users[t], full_name=f"Name {n}"))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {
            "update_profile": profile,
            "update_profile_cpu_ms": cpu / (profile * wall) * 1000,  # this process's CPU a command
            "issue_api_key": threaded_rate(
                lambda t, n: identity.issue_api_key(users[t], name=f"k{n}", permissions={"users:read": True})
            ),
            "update_profile_1": threaded_rate(
                lambda t, n: identity.update_user(users[0], full_name=f"Name {n}"), threads=1
            ),
        }
    finally:
        components.close()


FIGURES = (
    ("update_profile", f"update_profile, {THREADS} threads"),
    ("issue_api_key", f"issue_api_key, {THREADS} threads"),
    ("update_profile_1", "update_profile, 1 thread"),
)


def main() -> None:
    name = f"ledgerline_bench_{uuid.uuid4().hex[:8]}"
    url = ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    runs: dict[str, list[float]] = defaultdict(list)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE raw_commits (id bigserial PRIMARY KEY, body bytea)")
        for round_ in range(ROUNDS):
            runs["raw"].append(raw_rate(url))
            for group_commit in (False, True) if round_ % 2 == 0 else (True, False):
                for figure, value in command_rates(url, group_commit=group_commit).items():
                    runs[f"{figure} {'on' if group_commit else 'off'}"].append(value)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    median = {key: statistics.median(values) for key, values in runs.items()}
    raw = median["raw"]
    print(f"{THREADS} threads, {SECONDS:g} s a figure, median of {ROUNDS} rounds")
    print(f"{'figure':<46}{'per second':>12}{'ratio to raw':>14}   rounds")
    rows = [(f"raw psycopg INSERT+COMMIT ({THREADS} connections)", "raw")]
    for figure, label in FIGURES:
        rows.append((f"{label}, group commit off", f"{figure} off"))
        rows.append((f"{label}, group commit on", f"{figure} on"))
    for label, key in rows:
        rounds = " ".join(f"{value:,.0f}" for value in runs[key])
        print(f"{label:<46}{median[key]:>12,.0f}{median[key] / raw:>14.2f}   {rounds}")
    for setting in ("off", "on"):
        print(
            f"process CPU per update_profile command, group commit {setting}: "
            f"{median[f'update_profile_cpu_ms {setting}']:.2f} ms (one process runs Python on one core)"
        )
    for figure, label in FIGURES:  # on/off within each round: both ran minutes apart at most
        ratios = [on / off for on, off in zip(runs[f"{figure} on"], runs[f"{figure} off"], strict=True)]
        print(f"group commit on/off, {label}: x{statistics.median(ratios):.2f} (median of rounds)")


if __name__ == "__main__":
    main()
