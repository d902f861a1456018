"""Real `ledgerline serve` processes for tests, and a client that spreads requests over them."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET

LEDGERLINE = str(Path(sys.executable).with_name("ledgerline"))
FAST_ARGON2_ENV = {"LEDGERLINE_ARGON2_MEMORY_KIB": "1024", "LEDGERLINE_ARGON2_TIME_COST": "1"}


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


@contextlib.contextmanager
def serving(
    database_url: str, data_dir: Path, count: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    """``count`` API processes on one (initialised) PostgreSQL database, each on its own port."""
    urls, processes = [], []
    try:
        for _ in range(count):
            port = free_port()
            env = {
                **os.environ,
                "LEDGERLINE_DATABASE_URL": database_url,
                "LEDGERLINE_SECRET_KEY": TEST_SECRET,
                "LEDGERLINE_DATA_DIR": str(data_dir),
                "LEDGERLINE_PORT": str(port),
                "LEDGERLINE_POOL_SIZE": "5",
                **(extra_env or {}),
            }
            log = (data_dir / f"serve-{port}.log").open("wb")  # a pipe nobody reads would fill and block
            processes.append(subprocess.Popen([LEDGERLINE, "serve"], env=env, stdout=log, stderr=log))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_for_health(url)
        yield urls, processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


class Alternating(httpx.BaseTransport):
    """Sends each request to the next process in turn: a client that reads its own write on
    another process than the one it wrote through, every time."""

    def __init__(self, urls: list[str]) -> None:
        self._targets = itertools.cycle([httpx.URL(url) for url in urls])
        self._transport = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = next(self._targets)
        request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
        request.headers["host"] = target.netloc.decode()
        return self._transport.handle_request(request)

    def close(self) -> None:
        self._transport.close()
