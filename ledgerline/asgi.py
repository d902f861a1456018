"""The API as an ASGI application factory, for `ledgerline serve` with LEDGERLINE_WORKERS > 1:
uvicorn starts that many processes and each builds its own components from the environment
(credential caches, usage counters and breakers are per process by design)."""

from __future__ import annotations

import os

from litestar import Litestar

from ledgerline import logs
from ledgerline.bootstrap import build, build_app
from ledgerline.settings import Settings


def create() -> Litestar:
    logs.configure()
    return build_app(build(Settings.from_env(os.environ)))
