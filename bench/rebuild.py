"""rebuild_events_per_s: a blue-green rebuild of each projection over the bulk-written log (each
by `ledgerline projections rebuild NAME`, its time and peak RSS), next to PostgreSQL's bulk-load
rates: COPY into a table like the audit log's, with its indexes and without any (the physical
limit of filling it).

What bounds a rebuild is told by two more rates over the first ``SAMPLE`` events: reading the
notification log alone, and reading plus decoding it (what every projection pays first).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from bench.harness import Deployment, Figure
from ledgerline.bootstrap import Components

SAMPLE = 100_000
PAGE = 2000


def copy_baseline(url: str, rows: int, *, indexes: bool) -> float:
    """COPY ``rows`` audit-like rows into a table LIKE the live audit log, with its indexes or
    without any (not even its primary key)."""
    sealed = json.dumps({"v": 1, "s": uuid.uuid4().hex, "c": "x" * 60})
    changes = json.dumps({"full_name": {"sealed": sealed}})
    resources = [uuid.uuid4() for _ in range(10_000)]
    start = datetime.now(UTC) - timedelta(days=365)
    with psycopg.connect(url) as conn:
        (live,) = conn.execute("SELECT live FROM projection_generations WHERE name = 'audit_log'").fetchone()  # type: ignore[misc]
        including = "INCLUDING ALL" if indexes else "INCLUDING DEFAULTS"
        conn.execute(f"CREATE TABLE copy_baseline (LIKE audit_log_g{live} {including})")
        conn.commit()
        started = time.perf_counter()
        mac = "0" * 64  # each row's MAC (its length; the rebuild computes every one)
        with conn.cursor().copy("COPY copy_baseline FROM STDIN") as copy:
            for i in range(1, rows + 1):
                resource = resources[i % len(resources)]
                copy.write_row(
                    (i, start + timedelta(seconds=i * 30), "user.profile_updated", "user", resource, i // 100,
                     resource, "user", None, sealed, sealed, uuid.uuid4().hex, None, None, "success", changes,
                     mac)
                )  # fmt: skip
        conn.commit()
        rate = rows / (time.perf_counter() - started)
        conn.execute("DROP TABLE copy_baseline")
        conn.commit()
    return rate


def measure(components: Components, deployment: Deployment, url: str, events: int) -> Figure:
    indexed = copy_baseline(url, events, indexes=True)
    baseline = copy_baseline(url, events, indexes=False)
    identity = components.identity
    sample = min(SAMPLE, events)
    extra: dict[str, object] = {}
    for label, decode in (("read_only", False), ("read_decode", True)):
        started, position, to_event = time.perf_counter(), 0, identity.mapper.to_domain_event
        while position < sample:
            page = identity.recorder.select_notifications(position, PAGE, inclusive_of_start=False)
            if not page:
                break
            if decode:
                for notification in page:
                    to_event(notification)
            position = page[-1].id
        extra[f"{label}_events_per_s"] = round(position / (time.perf_counter() - started))
    rates, rss = {}, {}
    for name in components.projections:
        seconds, rss[name] = deployment.measured("projections", "rebuild", name)
        rates[name] = events / seconds
    slowest = min(rates, key=rates.__getitem__)
    return Figure(
        "rebuild_events_per_s",
        rates[slowest],
        "events/s",
        ">= 50000",
        baseline=baseline,
        extra={
            "events": events,
            "by_projection": {name: round(rate) for name, rate in rates.items()},
            "peak_rss_mib": {name: round(mib) for name, mib in rss.items()},
            "copy_indexed_rows_per_s": round(indexed),
            **extra,
            "notes": f"value: the slowest projection ({slowest}); each rebuilt alone by `ledgerline "
            "projections rebuild NAME` (process start to exit, peak RSS of that process); baseline: "
            "COPY into a table LIKE the audit log without any index (copy_indexed: with its "
            f"indexes); read rates over the first {sample:,} events",
        },
    )
