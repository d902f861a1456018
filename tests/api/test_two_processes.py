"""Two real API processes on one PostgreSQL: revocation reaches the other process within a second,
and usage counted in both processes adds up exactly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledgerline.bootstrap import build
from tests.conftest import TEST_SECRET, settings_for

LEDGERLINE = str(Path(sys.executable).with_name("ledgerline"))
PASSWORD = "Correct-Horse-9"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the API at {url} did not start"
        time.sleep(0.2)


@pytest.fixture
def two_servers(
    pg_database: str, tmp_path: Path
) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    build(settings_for(pg_database, tmp_path), init=True).close()
    urls, processes = [], []
    for _ in range(2):
        port = free_port()
        env = {
            **os.environ,
            "LEDGERLINE_DATABASE_URL": pg_database,
            "LEDGERLINE_SECRET_KEY": TEST_SECRET,
            "LEDGERLINE_DATA_DIR": str(tmp_path),
            "LEDGERLINE_PORT": str(port),
            "LEDGERLINE_POOL_SIZE": "5",
        }
        log = (tmp_path / f"serve-{port}.log").open("wb")  # a pipe nobody reads would fill and block it
        processes.append(subprocess.Popen([LEDGERLINE, "serve"], env=env, stdout=log, stderr=log))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            wait_for_health(url)
        yield urls, processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def test_revocation_in_one_process_is_seen_by_the_other_within_a_second(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], pg_database: str, tmp_path: Path
) -> None:
    (first, second), _ = two_servers
    components = build(settings_for(pg_database, tmp_path))
    try:
        owner = components.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)
        key = components.identity.issue_api_key(owner.id, name="k", permissions={"api_keys:write": True}).key
        key_id = components.identity.verify_api_key(key).key_id
    finally:
        components.close()
    headers = {"X-API-Key": key}
    with httpx.Client(timeout=5) as client:
        assert client.get(f"{second}/api/v1/users/me", headers=headers).status_code == 200  # cached there
        assert client.post(f"{first}/api/v1/api-keys/{key_id}/revoke", headers=headers).status_code == 200
        revoked_at = time.monotonic()
        while client.get(f"{second}/api/v1/users/me", headers=headers).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0, "the other process still accepts the revoked key"
            time.sleep(0.02)


def test_usage_counts_are_exact_across_processes(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], pg_database: str, tmp_path: Path
) -> None:
    urls, processes = two_servers
    components = build(settings_for(pg_database, tmp_path))
    try:
        owner = components.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)
        issued = components.identity.issue_api_key(owner.id, name="k", permissions={"users:read": True})
        with httpx.Client(timeout=5) as client:
            for n in range(1000):
                response = client.get(f"{urls[n % 2]}/api/v1/users/me", headers={"X-API-Key": issued.key})
                assert response.status_code == 200
        for process in processes:  # graceful shutdown flushes what each process counted
            process.send_signal(signal.SIGTERM)
        for process in processes:  # uvicorn ends by re-raising SIGTERM once shutdown is complete
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert components.identity.get_api_key(issued.result.id).usage_count == 1000
    finally:
        components.close()
