"""``ledgerline serve`` on the embedded SQLite default delivers too (its projector runs in-process):
a subscription made through the API receives the next registration, signed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.api.processes import FAST_ARGON2_ENV, LEDGERLINE, free_port, wait_for_health
from tests.integration.stream_receiver import receiving, wait_until
from tests.integration.test_streaming import STREAM_ENV


def test_serve_on_sqlite_delivers_what_the_api_subscribes(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **FAST_ARGON2_ENV,
        **STREAM_ENV,
        "LEDGERLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledgerline.sqlite3'}",
        "LEDGERLINE_DATA_DIR": str(tmp_path),
        "LEDGERLINE_PORT": str(port),
    }
    out = tmp_path / "serve.log"
    with out.open("wb") as log:
        process = subprocess.Popen([LEDGERLINE, "serve"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base)
        deadline = time.monotonic() + 10
        while not (found := re.search(r"API key:\s+(\S+)", out.read_text())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found, out.read_text()
        admin = {"X-API-Key": found.group(1)}
        with receiving() as receiver, httpx.Client(base_url=base, timeout=10) as client:
            created = client.post(
                "/api/v1/subscriptions",
                json={"url": receiver.url, "filter": {"actions": ["user.registered"]}},
                headers=admin,
            )
            assert created.status_code == 201, created.text
            registered = client.post(
                "/api/v1/auth/register",
                json={"username": "newcomer", "email": "new@example.com", "password": "Correct-Horse-9"},
            )
            assert registered.status_code == 201, registered.text
            assert wait_until(lambda: len(receiver.accepted()) == 1, 15), out.read_text()[-2000:]
            entry = receiver.accepted()[0].entry
            assert entry["action"] == "user.registered"
            assert entry["resource_id"] == registered.json()["data"]["id"]
            receiver.verify_all(created.json()["data"]["secret"])
            path = f"/api/v1/subscriptions/{created.json()['data']['id']}"
            assert wait_until(lambda: client.get(path, headers=admin).json()["data"]["delivered"] == 1, 5)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
