"""Several API processes for `ledgerline serve` (LEDGERLINE_WORKERS > 1, PostgreSQL): uvicorn's
supervisor starts them on one listening socket and each builds its own components from the
environment (credential caches, usage counters and breakers are per process by design)."""

from __future__ import annotations

import os
import socket

import uvicorn
from litestar import Litestar
from uvicorn.supervisors import Multiprocess

from ledgerline import logs
from ledgerline.bootstrap import build, build_app
from ledgerline.settings import Settings


def create() -> Litestar:
    """The application of one worker process (uvicorn's factory)."""
    settings = Settings.from_env(os.environ)
    logs.configure(access=settings.access_log)
    return build_app(build(settings))


def run_workers(settings: Settings) -> None:
    config = uvicorn.Config(
        "ledgerline.asgi:create", factory=True, workers=settings.workers, host=settings.host,
        port=settings.port, log_config=None, access_log=False,
        proxy_headers=False,  # the peer's address; api.context believes only LEDGERLINE_TRUSTED_PROXIES
    )  # fmt: skip
    Multiprocess(config, sockets=[listening_socket(config)]).run()


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """uvicorn binds with protocol 0, so asyncio leaves Nagle on for the connections it accepts
    and every keep-alive response then waits ~40 ms for a delayed ACK: accepted sockets inherit
    TCP_NODELAY from the listener."""
    listener = config.bind_socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener
