"""``create_app``: the Litestar application. The resource routes arrive with the REST API issue;
this holds the health routes and the OpenAPI document."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.openapi import OpenAPIConfig

from api.schemas import Health


def create_app(*, version: str) -> Litestar:
    @get("/health", sync_to_thread=False)
    def health() -> Health:
        return Health(status="ok", version=version)

    @get("/live", sync_to_thread=False)
    def live() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(
        route_handlers=[health, live],
        openapi_config=OpenAPIConfig(title="Ledgerline", version=version),
    )
