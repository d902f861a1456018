"""Several API processes for `ledgerline serve` (LEDGERLINE_WORKERS > 1, PostgreSQL): uvicorn's
supervisor starts them on one listening socket and each builds its own components from the
environment (credential caches, usage counters and breakers are per process by design)."""

from __future__ import annotations

import os
import shutil
import socket

import uvicorn
from litestar import Litestar
from uvicorn.supervisors import Multiprocess

from ledgerline import logs
from ledgerline.bootstrap import build, build_app
from ledgerline.secret_files import read_secret_files
from ledgerline.settings import Settings

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it when imported


def create() -> Litestar:
    """The application of one worker process (uvicorn's factory)."""
    read_secret_files(os.environ)  # done by the CLI already, unless uvicorn was started by hand
    settings = Settings.from_env(os.environ)
    logs.configure(settings.log_level, access=settings.access_log)
    return build_app(build(settings))


def prepare_metrics(settings: Settings) -> None:
    """Several processes (``LEDGERLINE_WORKERS`` > 1): prometheus-client's multiprocess mode, its
    files in ``DATA_DIR/metrics``, emptied at start (what a previous run left would be counted
    again). Set in the supervisor before it starts the workers: they inherit the environment and
    import prometheus-client afresh. One process keeps its metrics in memory."""
    if settings.workers == 1 or not settings.metrics:
        os.environ.pop(MULTIPROCESS_DIR, None)
        return
    directory = settings.data_dir.resolve() / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROCESS_DIR] = str(directory)


def run_workers(settings: Settings) -> None:
    config = uvicorn.Config(
        "ledgerline.asgi:create", factory=True, workers=settings.workers, host=settings.host,
        port=settings.port, log_config=None, access_log=False,
        proxy_headers=False,  # the peer's address; api.context believes only LEDGERLINE_TRUSTED_PROXIES
        # uvicorn kills a worker that does not answer its supervisor's ping within this; a
        # worker imports the whole application first (seconds on a busy host or a small CPU
        # quota): with uvicorn's 5 s, workers were killed and restarted in a loop under load.
        timeout_worker_healthcheck=30,
    )  # fmt: skip
    Supervisor(config, sockets=[listening_socket(config)]).run()


class Supervisor(Multiprocess):
    """uvicorn's, telling prometheus-client of each worker that died: its live gauges (breaker,
    usage backlog) stop counting; its counters stay in the sums, as counters must."""

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        if os.environ.get(MULTIPROCESS_DIR):
            from prometheus_client import multiprocess

            for pid in before - {process.pid for process in self.processes}:
                if pid is not None:
                    multiprocess.mark_process_dead(pid)


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """uvicorn binds with protocol 0, so asyncio leaves Nagle on for the connections it accepts
    and every keep-alive response then waits ~40 ms for a delayed ACK: accepted sockets inherit
    TCP_NODELAY from the listener."""
    listener = config.bind_socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener
