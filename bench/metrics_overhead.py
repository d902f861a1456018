"""What the metrics cost a cheap request (decision 0016): CPU time per ``GET /live`` driven
straight through the ASGI application (no network, no client), metrics on and off, rounds
interleaved so that a busy host slows both alike. ``python -m bench.metrics_overhead [N]``."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ledgerline.bootstrap import build, build_app
from ledgerline.settings import Settings


async def drive(app: Any, count: int) -> float:
    """CPU seconds per request for ``count`` sequential GET /live."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/live", "raw_path": b"/live", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200

    started = time.process_time()
    for _ in range(count):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / count


def main(count: int = 20_000, rounds: int = 5) -> None:
    data = Path(tempfile.mkdtemp())
    settings = Settings.from_env({"LEDGERLINE_DATA_DIR": str(data), "LEDGERLINE_ACCESS_LOG": "false",
                                  "LEDGERLINE_DATABASE_URL": f"sqlite:///{data}/l.sqlite3"})  # fmt: skip
    components = build(settings, init=True)
    apps = {}
    for measure in (True, False):
        components.settings = replace(settings, metrics=measure)
        apps[measure] = build_app(components, watch_credentials=False)
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for measure, app in apps.items():
            timings[measure].append(asyncio.run(drive(app, count)))
    on, off = statistics.median(timings[True]), statistics.median(timings[False])
    print(f"GET /live, {count} requests x {rounds} rounds, CPU per request (median):")
    print(f"  metrics off: {off * 1e6:.1f} us   metrics on: {on * 1e6:.1f} us")
    print(f"  cost: {(on - off) * 1e6:.1f} us per request; throughput ratio on/off: {off / on:.3f}")
    components.close()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
