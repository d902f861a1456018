"""Streaming events out: webhook deliveries per second, and delivery lag at a steady write rate.

On a scratch PostgreSQL database (or SQLite with ``LEDGERLINE_BENCH_STORE=sqlite``), with a real
``ledgerline project`` process delivering and a receiver in a process of its own that answers 200
at once (HTTP/1.1 keep-alive, like a real receiver):
  deliveries_per_s: EVENTS audit entries already projected, a subscription from position 1
                    created, then first to last acknowledged delivery (one entry per request, in
                    order: the receiver's round trip bounds it); beside it the API's write rate
                    from bench/results/latest.json (commands_per_s), as a ratio
  lag at RATE events/s: WRITERS writer processes append profile changes (4 per append, as
                    bench/live.py) paced to RATE events/s
                    for SECONDS (the rate they reached is printed); per delivery, receipt time
                    minus the event's occurred_at; p50, p99, max (it includes the audit
                    projection's own lag: the median positions behind the head of the projection
                    and of the deliverer behind the projection are printed beside it)
Run: `python -m bench.streaming`. ``LEDGERLINE_BENCH_EVENTS`` (3000), ``LEDGERLINE_BENCH_RATE``
(500), ``LEDGERLINE_BENCH_SECONDS`` (10) change the scale; ``LEDGERLINE_BENCH_PROJECT_ARGS`` is
passed to ``ledgerline project`` (e.g. ``--projection audit_log``: the deliverer then shares its
process with one projector instead of three); ``LEDGERLINE_BENCH_SPLIT=1`` runs the deliverer in
a process of its own (``project --no-delivery`` beside ``project --only-delivery``). The machine
is shared: the figures
are printed with the load average seen.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, percentile, scratch_database
from domain.audit import AuditContext, acting_as
from eventstore.passwords import Argon2Parameters, Passwords
from ledgerline.bootstrap import Components, build
from ledgerline.settings import Settings
from projections.streaming.cursors import cursor_states, subscription_cursor
from projections.streaming.source import audit_log_position

EVENTS = int(os.environ.get("LEDGERLINE_BENCH_EVENTS", "3000"))
RATE = float(os.environ.get("LEDGERLINE_BENCH_RATE", "500"))
SECONDS = float(os.environ.get("LEDGERLINE_BENCH_SECONDS", "10"))
STORE = os.environ.get("LEDGERLINE_BENCH_STORE", "postgres")
WRITERS = 2
PROJECT_ARGS = os.environ.get("LEDGERLINE_BENCH_PROJECT_ARGS", "").split()
# 1: the deliverer in a process of its own (`project --no-delivery` beside `project --only-delivery`)
SPLIT = os.environ.get("LEDGERLINE_BENCH_SPLIT", "") == "1"
EVENTS_PER_APPEND = 4
FAST = Passwords(Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1))
ADMIN = AuditContext(actor_type="system", request_id="bench-streaming")
LEDGERLINE = str(Path(sys.executable).with_name("ledgerline"))


# ---- the receiver (its own process) -------------------------------------------------------


def receive(port_out: Any, log_path: str) -> None:
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 (the process's whole life)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            arrived = time.time()
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            entry = json.loads(body)
            occurred = datetime.fromisoformat(entry["occurred_at"]).timestamp()
            log.write(f"{entry['position']} {arrived} {occurred}\n")

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def received(log_path: Path) -> list[tuple[int, float, float]]:
    rows = []
    for line in log_path.read_text().splitlines():
        position, arrived, occurred = line.split()
        rows.append((int(position), float(arrived), float(occurred)))
    return rows


# ---- writers (their own processes) ----------------------------------------------------------


def settings_env(url: str, data_dir: Path, secret: str) -> dict[str, str]:
    return {
        "LEDGERLINE_DATABASE_URL": url,
        "LEDGERLINE_SECRET_KEY": secret,
        "LEDGERLINE_DATA_DIR": str(data_dir),
        "LEDGERLINE_POOL_SIZE": "5",
        "LEDGERLINE_STREAM_ALLOW_LOOPBACK": "true",
    }


def write_paced(env: dict[str, str], index: int, rate: float, seconds: float, done: Any) -> None:
    """Appends of EVENTS_PER_APPEND profile changes (as bench/live.py), paced to ``rate`` events/s."""
    components = build(Settings.from_env(env), passwords=FAST)
    identity = components.identity
    tag = f"{index}-{secrets.token_hex(3)}"
    password = "Correct-Horse-9"
    user_id = identity.register_user(username=f"w{tag}", email=f"w{tag}@bench.example", password=password).id
    user = identity.get_user(user_id)
    interval, appends = EVENTS_PER_APPEND / rate, int(seconds * rate / EVENTS_PER_APPEND)
    began = time.monotonic()
    with acting_as(ADMIN):
        for k in range(appends):
            pause = began + k * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            for i in range(EVENTS_PER_APPEND):
                user.update_profile(full_name=f"n{k} {i}")
            identity.save(user)
    done.send(appends * EVENTS_PER_APPEND / (time.monotonic() - began))
    components.close()


def preload(components: Components, events: int) -> None:
    """``events`` audited profile changes, from 8 threads (group commit on PostgreSQL)."""
    identity = components.identity
    users = [
        identity.register_user(username=f"pre{n}", email=f"pre{n}@bench.example", password="Correct-Horse-9")
        for n in range(8)
    ]
    per = events // len(users)

    def run(user_id: Any) -> None:
        for k in range(per):
            identity.update_user(user_id, full_name=f"p{k}")

    threads = [threading.Thread(target=run, args=(u.id,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# ---- the figures ----------------------------------------------------------------------------


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.05)


def projected(components: Components) -> int:
    with components.engine.connect() as conn:
        return audit_log_position(conn)


def cursor(components: Components, subscription_id: Any) -> int:
    with components.engine.connect() as conn:
        state = cursor_states(conn).get(subscription_cursor(subscription_id))
    return -1 if state is None else state.delivered_through


@contextmanager
def store() -> Any:
    if STORE == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.sqlite3"
    else:
        with scratch_database() as url:
            yield url


def main() -> None:
    secret = secrets.token_hex(32)
    context = multiprocessing.get_context("spawn")
    with store() as url, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        env = settings_env(url, data_dir, secret)
        components = build(Settings.from_env(env), init=True, passwords=FAST)
        receiver_log = data_dir / "received.txt"
        port_in, port_out = context.Pipe()
        receiver = context.Process(target=receive, args=(port_out, str(receiver_log)), daemon=True)
        receiver.start()
        hook = f"http://127.0.0.1:{port_in.recv()}/hook"
        project_log = (data_dir / "project.log").open("ab")
        commands = [["--no-delivery", *PROJECT_ARGS], ["--only-delivery"]] if SPLIT else [PROJECT_ARGS]
        projects = [
            subprocess.Popen(
                [LEDGERLINE, "project", *args],
                env={**os.environ, **env},
                stdout=project_log,
                stderr=project_log,
            )
            for args in commands
        ]
        try:
            # deliveries/s: a backlog already projected, then a subscription from position 1.
            preload(components, EVENTS)
            head = components.identity.head_position()
            wait_for(lambda: projected(components) >= head, 300, "the audit projection catching up")
            with acting_as(ADMIN):
                backlog = components.identity.create_subscription(url=hook, from_position=1)
            wait_for(lambda: cursor(components, backlog.result.id) >= head, 600, "the backlog delivered")
            rows = received(receiver_log)
            span = max(r[1] for r in rows) - min(r[1] for r in rows)
            deliveries_per_s = (len(rows) - 1) / span
            positions = [r[0] for r in rows]
            assert positions == sorted(set(positions)), "out of order or doubled"

            # lag at RATE events/s (the same subscription, now caught up).
            receiver_log.write_text("")
            start_head = components.identity.head_position()
            pipes, writers = [], []
            for index in range(WRITERS):
                mine, theirs = context.Pipe()
                writer = context.Process(
                    target=write_paced, args=(env, index, RATE / WRITERS, SECONDS, theirs)
                )
                writer.start()
                pipes.append(mine)
                writers.append(writer)
            samples: list[tuple[int, int, int]] = []  # head, projected, delivered: where the lag is
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.1):
                    head_now = components.identity.head_position()
                    samples.append((head_now, projected(components), cursor(components, backlog.result.id)))

            sampler = threading.Thread(target=sample)
            sampler.start()
            rates = [pipe.recv() for pipe in pipes]
            sampling.set()
            sampler.join()
            for writer in writers:
                writer.join()
            end_head = components.identity.head_position()
            wait_for(
                lambda: cursor(components, backlog.result.id) >= end_head, 120, "the live writes delivered"
            )
            live = [r for r in received(receiver_log) if r[0] > start_head]
            lags = [(arrived - occurred) * 1000 for _, arrived, occurred in live]
            load = os.getloadavg()
        finally:
            for project in projects:
                project.send_signal(signal.SIGTERM)
            for project in projects:
                project.wait(timeout=60)
            receiver.terminate()
            components.close()
    api_rate = _api_write_rate()
    results = {
        "store": STORE,
        "deliverer": "own process" if SPLIT else "in project with the projectors",
        "deliveries_per_s": round(deliveries_per_s, 1),
        "backlog_entries": len(rows),
        "api_commands_per_s (latest.json)": api_rate,
        "deliveries_vs_api_writes": round(deliveries_per_s / api_rate, 2) if api_rate else None,
        "lag_target_events_per_s": RATE,
        "lag_achieved_events_per_s": round(sum(rates), 1),
        "lag_deliveries": len(lags),
        "lag_p50_ms": round(percentile(lags, 50), 1),
        "lag_p99_ms": round(percentile(lags, 99), 1),
        "lag_max_ms": round(max(lags), 1),
        "behind_head_p50_positions": {
            "audit_projection": percentile([h - p for h, p, _ in samples], 50),
            "deliverer_behind_projection": percentile([p - d for _, p, d in samples], 50),
        },
        "load_average": [round(x, 1) for x in load],
    }
    print(json.dumps(results, indent=1))


def _api_write_rate() -> float | None:
    try:
        figure = json.loads((RESULTS / "latest.json").read_text())["commands_per_s"]
        return float(figure["value"])
    except (OSError, KeyError, ValueError):
        return None


if __name__ == "__main__":
    main()
