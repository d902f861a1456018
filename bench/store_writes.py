"""Event-store write throughput next to its physical baseline, measured side by side.

Creates a scratch PostgreSQL database, then for the same duration each:
  raw:      psycopg single-row INSERT + COMMIT, one connection (the server's commit rate)
  command:  Identity.update_profile (load the user, one event, one atomic append), one thread
  register: Identity.register_user (3 events in one append; Argon2 at fast test parameters)
and prints each rate and its ratio to the raw baseline. Run: `make bench-store`.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from eventstore.passwords import Argon2Parameters, Passwords
from ledgerline.bootstrap import build
from ledgerline.settings import Settings

ADMIN_DSN = os.environ.get("LEDGERLINE_BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
SECONDS = float(os.environ.get("LEDGERLINE_BENCH_SECONDS", "5"))


def rate(operation: Callable[[int], object]) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        operation(count)
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    name = f"ledgerline_bench_{uuid.uuid4().hex[:8]}"
    url = ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE raw_commits (id bigserial PRIMARY KEY, body bytea)")
            conn.commit()

            def raw(_: int) -> None:
                conn.execute("INSERT INTO raw_commits (body) VALUES (%s)", (b"x" * 300,))
                conn.commit()

            raw_rate = rate(raw)

        settings = Settings.from_env(
            {
                "LEDGERLINE_DATABASE_URL": url,
                "LEDGERLINE_SECRET_KEY": "22" * 32,
                "LEDGERLINE_DATA_DIR": tempfile.mkdtemp(),
            }
        )
        fast = Passwords(Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1))
        components = build(settings, init=True, passwords=fast)
        identity = components.identity
        user = identity.register_user(username="bench", email="bench@example.com", password="Bench-pass-1")
        command_rate = rate(lambda n: identity.update_profile(user.id, full_name=f"Name {n}"))
        register_rate = rate(
            lambda n: identity.register_user(
                username=f"u{n}", email=f"u{n}@example.com", password="Bench-pass-1"
            )
        )
        components.close()
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"{'figure':<38}{'per second':>12}{'ratio to raw':>14}")
    for label, value in (
        ("raw psycopg INSERT+COMMIT (1 client)", raw_rate),
        ("update_profile command (1 thread)", command_rate),
        ("register_user, 3 events (1 thread)", register_rate),
    ):
        print(f"{label:<38}{value:>12,.0f}{value / raw_rate:>14.2f}")


if __name__ == "__main__":
    Path(__file__).parent.joinpath("results").mkdir(exist_ok=True)
    main()
