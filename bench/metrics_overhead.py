"""What the metrics and tracing cost a cheap request (decision 0016): CPU time per ``GET /live``
driven straight through the ASGI application (no network, no client): both off, metrics on,
metrics and tracing on (spans made, none exported), rounds interleaved so that a busy host slows
them alike. Tracing off builds the application without it. ``python -m bench.metrics_overhead [N]``."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from ledgerline.bootstrap import build, build_app
from ledgerline.settings import Settings


async def drive(app: Any, count: int, path: str) -> float:
    """CPU seconds per request for ``count`` sequential GETs of ``path``."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] in (200, 404)

    started = time.process_time()
    for _ in range(count):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / count


def main(count: int = 20_000, rounds: int = 5) -> None:
    import api.tracing

    api.tracing.otlp_provider = TracerProvider  # spans made and ended, sent nowhere
    data = Path(tempfile.mkdtemp())
    settings = Settings.from_env({"LEDGERLINE_DATA_DIR": str(data), "LEDGERLINE_ACCESS_LOG": "false",
                                  "LEDGERLINE_DATABASE_URL": f"sqlite:///{data}/l.sqlite3"})  # fmt: skip
    components = build(settings, init=True)
    apps = {}
    for name, measure, tracing in (("off", False, False), ("metrics", True, False), ("tracing", True, True)):
        components.settings = replace(settings, metrics=measure, tracing=tracing)
        apps[name] = build_app(components, watch_credentials=False)
    for path in ("/live", "/no-such-route"):  # a probe (never traced), a 404 (traced)
        timings: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(rounds):
            for name, app in apps.items():
                timings[name].append(asyncio.run(drive(app, count, path)))
        off = statistics.median(timings["off"])
        print(f"GET {path}, {count} requests x {rounds} rounds, CPU per request (median):")
        for name in apps:
            each = statistics.median(timings[name])
            print(f"  {name:>8}: {each * 1e6:6.1f} us  (+{(each - off) * 1e6:5.1f} us, x{off / each:.3f})")
    components.close()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
