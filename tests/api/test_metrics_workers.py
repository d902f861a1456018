"""`ledgerline serve --workers 2` on PostgreSQL: `/metrics` sums every API process's counts
(prometheus-client's multiprocess mode under DATA_DIR/metrics), whichever process is scraped,
and keeps a killed worker's counts; the flags win over the environment."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ledgerline.bootstrap import build
from tests.api.processes import LEDGERLINE, free_port, wait_for_health
from tests.conftest import TEST_SECRET, settings_for

PASSWORD = "Correct-Horse-9"
ME = "/api/v1/users/me"
REQUESTS = 40


def counted(url: str) -> float:
    """GET /users/me answered 200, as one scrape (one fresh connection: any process) reports it."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ledgerline_http_requests_total"
        and sample.labels == {"method": "GET", "route": ME, "status": "200"}
    )


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return sorted(int(child) for child in found)


def test_two_workers_counts_are_summed_whichever_is_scraped(pg_database: str, tmp_path: Path) -> None:
    components = build(settings_for(pg_database, tmp_path), init=True)
    try:
        owner = components.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)
        key = components.identity.issue_api_key(owner.id, name="k", permissions={"users:read": True}).key
    finally:
        components.close()
    stale = tmp_path / "metrics" / "counter_1.db"  # what a previous run left: removed at start
    stale.parent.mkdir()
    stale.write_bytes(b"garbage")
    port = free_port()
    env = {**os.environ, "LEDGERLINE_DATABASE_URL": pg_database, "LEDGERLINE_SECRET_KEY": TEST_SECRET,
           "LEDGERLINE_DATA_DIR": str(tmp_path), "LEDGERLINE_POOL_SIZE": "3",
           "LEDGERLINE_PORT": str(free_port()), "LEDGERLINE_WORKERS": "1",  # the flags win
           "LEDGERLINE_HOST": "localhost"}  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [LEDGERLINE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, 60)
        assert not stale.exists()
        for _ in range(REQUESTS):  # a fresh connection each: the two processes share the listener
            assert httpx.get(f"{url}{ME}", headers={"X-API-Key": key}, timeout=10).status_code == 200
        files = list((tmp_path / "metrics").glob("counter_*.db"))
        serving = {int(re.sub(r"\D", "", path.stem)) for path in files} & set(children(server.pid))
        assert len(serving) == 2, (children(server.pid), files)  # both processes counted requests
        # Every scrape, whichever process answers it, reports both processes' requests.
        assert [counted(url) for _ in range(6)] == [REQUESTS] * 6

        # A worker killed outright: the supervisor replaces it, its counts stay in the sums.
        victim, before = min(serving), set(children(server.pid))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while victim in children(server.pid) or not set(children(server.pid)) - before:
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.2)
        wait_for_health(url, 60)
        assert [counted(url) for _ in range(4)] == [REQUESTS] * 4
        gauges = httpx.get(f"{url}/metrics", timeout=10).text
        assert "ledgerline_database_breaker_open 0.0" in gauges  # the live processes' (max)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
