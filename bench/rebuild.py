"""Projection rebuild throughput next to PostgreSQL's bulk-load baseline, in one run.

Writes N events (users with many profile changes, saved 500 events per append), then measures:
  copy:      COPY of N rows of similar width into a fresh table (the server's bulk-load rate)
  read:      reading all notifications, 2,000 a page
  decode:    reading and decoding them (what every projection pays first)
  <name>:    `rebuild` of each projection, events/s over the whole log
Run: `make bench-rebuild` (LEDGERLINE_BENCH_EVENTS, default 100000).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid

import psycopg

from domain.users import User
from eventstore.passwords import Argon2Parameters, Passwords
from ledgerline.bootstrap import build
from ledgerline.settings import Settings
from projections.rebuild import rebuild

ADMIN_DSN = os.environ.get("LEDGERLINE_BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
EVENTS = int(os.environ.get("LEDGERLINE_BENCH_EVENTS", "100000"))
PER_USER = 100


def main() -> None:
    name = f"ledgerline_bench_{uuid.uuid4().hex[:8]}"
    url = ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    results: list[tuple[str, float]] = []
    try:
        settings = Settings.from_env(
            {
                "LEDGERLINE_DATABASE_URL": url,
                "LEDGERLINE_SECRET_KEY": "22" * 32,
                "LEDGERLINE_DATA_DIR": tempfile.mkdtemp(),
            }
        )
        components = build(settings, init=True, passwords=Passwords(Argon2Parameters(1024, 1, 1)))
        identity = components.identity
        started = time.perf_counter()
        for n in range(max(1, EVENTS // PER_USER)):
            user_id = identity.register_user(username=f"u{n}", email=f"u{n}@example.com", password="x").id
            user: User = identity.get_user(user_id)
            for k in range(PER_USER - 3):
                user.update_profile(full_name=f"Name {n} {k}")
            identity.save(user)
        head = identity.head_position()
        print(f"wrote {head:,} events in {time.perf_counter() - started:.1f}s")

        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE copy_baseline (position bigint PRIMARY KEY, action text, body jsonb)")
            started = time.perf_counter()
            with conn.cursor().copy("COPY copy_baseline (position, action, body) FROM STDIN") as copy:
                for i in range(head):
                    copy.write_row((i, "user.profile_updated", '{"full_name": "Name"}'))
            conn.commit()
            results.append(("COPY rows (baseline)", head / (time.perf_counter() - started)))

        started = time.perf_counter()
        position = 0
        while page := identity.recorder.select_notifications(position, 2000, inclusive_of_start=False):
            position = page[-1].id
        results.append(("read only", head / (time.perf_counter() - started)))

        started = time.perf_counter()
        position, decode = 0, identity.mapper.to_domain_event
        while page := identity.recorder.select_notifications(position, 2000, inclusive_of_start=False):
            for notification in page:
                decode(notification)
            position = page[-1].id
        results.append(("read + decode only", head / (time.perf_counter() - started)))

        for projection in components.projections.values():
            started = time.perf_counter()
            rebuild(projection, identity, components.engine)
            results.append((f"rebuild {projection.name}", head / (time.perf_counter() - started)))
        components.close()
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    baseline = results[0][1]
    print(f"{'figure':<26}{'events/s':>12}{'ratio to COPY':>15}")
    for label, rate in results:
        print(f"{label:<26}{rate:>12,.0f}{rate / baseline:>15.2f}")


if __name__ == "__main__":
    main()
