"""live_lag_p99_ms: with `ledgerline project` following the store, ``WRITERS`` processes append
profile changes through the Identity application at ~1,000 events/s in all (``EVENTS_PER_APPEND``
per append, paced); an event's lag is the time from its append's commit (``save()`` returned) to
the first poll (every ``POLL`` s) that sees every projection's tracked position past it. A
position moves in the same transaction as the projection's rows, so that is when the rows are
visible.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from bisect import bisect_left
from multiprocessing import get_context
from pathlib import Path
from uuid import UUID

import psycopg

from bench.harness import Figure, Process, percentile
from bench.measure import CpuMeter, profiled
from domain.audit import AuditContext, acting_as
from ledgerline.bootstrap import build
from ledgerline.settings import Settings

RATE = 1000  # events/s, all writers together
WRITERS = 2  # one process cannot pace 250 appends/s on this machine
EVENTS_PER_APPEND = 4
POLL = 0.002
POSITIONS = (
    "SELECT t.name, t.position FROM projection_tracking t JOIN projection_generations g "
    "ON g.name = t.name AND g.live = t.generation"
)


def _writer(env: dict[str, str], user_ids: list[str], seconds: float, out: str) -> None:
    components = build(Settings.from_env(env))
    identity = components.identity
    users = [identity.get_user(UUID(u)) for u in user_ids]
    interval, records = EVENTS_PER_APPEND * WRITERS / RATE, []
    start = time.monotonic() + 0.5
    with acting_as(AuditContext(actor_type="system", request_id="bench-live")):
        for k in range(int(seconds / interval)):
            pause = start + k * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            user = users[k % len(users)]
            for i in range(EVENTS_PER_APPEND):
                user.update_profile(full_name=f"Live {k} {i}")
            recordings = identity.save(user)
            records.append((max(r.notification.id for r in recordings), time.monotonic()))
    components.close()
    Path(out).write_text(json.dumps(records))


def measure(
    projector: Process, url: str, env: dict[str, str], user_ids: list[UUID], seconds: float
) -> Figure:
    outs = [tempfile.NamedTemporaryFile(suffix=".json", delete=False).name for _ in range(WRITERS)]  # noqa: SIM115
    writers = [
        get_context("spawn").Process(
            target=_writer, args=(env, [str(u) for u in user_ids[n::WRITERS]], seconds, out)
        )
        for n, out in enumerate(outs)
    ]
    seen: dict[str, tuple[list[float], list[int]]] = {}
    with (
        psycopg.connect(url, autocommit=True) as conn,
        CpuMeter(projector=projector.pid) as cpu,
        profiled(projector, "live-projector", seconds),
    ):
        for writer in writers:
            writer.start()
        try:
            deadline = None
            while deadline is None or time.monotonic() < deadline:
                rows = conn.execute(POSITIONS).fetchall()
                now = time.monotonic()
                for name, position in rows:
                    times, positions = seen.setdefault(name, ([], []))
                    if not positions or position > positions[-1]:
                        times.append(now)
                        positions.append(position)
                if deadline is None and not any(writer.is_alive() for writer in writers):
                    deadline = now + 5  # let the projections take in the last events
                time.sleep(POLL)
        finally:
            for writer in writers:
                writer.join(timeout=30)
                if writer.is_alive():
                    writer.kill()
    if any(writer.exitcode != 0 for writer in writers):
        raise RuntimeError(f"a live writer failed: exit codes {[w.exitcode for w in writers]}")
    records = sorted(record for out in outs for record in json.loads(Path(out).read_text()))
    for out in outs:
        Path(out).unlink()
    lags: dict[str, list[float]] = {name: [] for name in seen}
    overall, missing = [], 0
    for position, committed in records:
        worst = 0.0
        for name, (times, positions) in seen.items():
            index = bisect_left(positions, position)
            if index == len(positions):
                missing += 1
                break
            lag = max(0.0, times[index] - committed) * 1000
            lags[name].append(lag)
            worst = max(worst, lag)
        else:
            overall.append(worst)
    times = sorted(committed for _, committed in records)
    achieved = len(records) * EVENTS_PER_APPEND / (times[-1] - times[0])
    return Figure(
        "live_lag_p99_ms",
        percentile(overall, 99),
        "ms (p99)",
        "<= 50",
        extra={
            "p50_ms": round(statistics.median(overall), 2),
            "max_ms": round(max(overall), 2),
            "by_projection": {
                name: {"p50_ms": round(percentile(v, 50), 2), "p99_ms": round(percentile(v, 99), 2)}
                for name, v in lags.items()
            },
            "events_per_s": round(achieved),
            "appends": len(records),
            "never_seen": missing,
            "cpu_cores": cpu.cores,
            "notes": f"{WRITERS} writer processes: Identity.save of {EVENTS_PER_APPEND} profile changes "
            f"per append, paced to {RATE} events/s in all; lag until every projection's tracked "
            f"position has passed the append (polled every {POLL * 1000:.0f} ms; `ledgerline project` "
            "running)",
        },
    )
