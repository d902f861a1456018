"""`ledgerline serve` with LEDGERLINE_WORKERS=2 on PostgreSQL: requests are answered by two
processes, and the embedded store refuses more than one."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx

from ledgerline.bootstrap import build
from tests.api.test_two_processes import LEDGERLINE, PASSWORD, free_port, wait_for_health
from tests.conftest import TEST_SECRET, settings_for


def test_two_worker_processes_serve_one_api(pg_database: str, tmp_path: Path) -> None:
    components = build(settings_for(pg_database, tmp_path), init=True)
    try:
        owner = components.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)
        key = components.identity.issue_api_key(owner.id, name="k", permissions={"users:read": True}).key
    finally:
        components.close()
    port = free_port()
    env = {**os.environ, "LEDGERLINE_DATABASE_URL": pg_database, "LEDGERLINE_SECRET_KEY": TEST_SECRET,
           "LEDGERLINE_DATA_DIR": str(tmp_path), "LEDGERLINE_PORT": str(port), "LEDGERLINE_POOL_SIZE": "3",
           "LEDGERLINE_WORKERS": "2"}  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([LEDGERLINE, "serve"], env=env, stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, 60)
        with httpx.Client(base_url=url, headers={"X-API-Key": key}) as client:
            answers = [client.get("/api/v1/users/me") for _ in range(20)]
        assert {answer.status_code for answer in answers} == {200}
        assert {answer.json()["data"]["username"] for answer in answers} == {"alice"}
        workers = subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(workers) >= 2, workers
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_the_embedded_store_refuses_more_than_one_worker(tmp_path: Path) -> None:
    env = {**os.environ, "LEDGERLINE_DATABASE_URL": f"sqlite:///{tmp_path}/l.sqlite3",
           "LEDGERLINE_DATA_DIR": str(tmp_path), "LEDGERLINE_WORKERS": "2"}  # fmt: skip
    done = subprocess.run([LEDGERLINE, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "LEDGERLINE_WORKERS" in done.stderr


def test_worker_connections_do_not_wait_for_delayed_acks() -> None:
    """The shared listener has TCP_NODELAY, and the connections it accepts inherit it."""
    import socket

    import uvicorn

    from ledgerline.asgi import listening_socket

    listener = listening_socket(uvicorn.Config("ledgerline.asgi:create", host="127.0.0.1", port=free_port()))
    try:
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert client and accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
