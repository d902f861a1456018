"""``GET /metrics``: Prometheus text, at the root beside the probes, without authentication
(decision 0016: no label or value carries personal data or a caller's input)."""

from __future__ import annotations

import anyio
from litestar import Response, get

from api.authorization import authorize
from api.metrics import CONTENT_TYPE
from api.services import Services


@get("/metrics", guards=[authorize], include_in_schema=False)
async def metrics(services: Services) -> Response[bytes]:
    if services.metrics is None:  # LEDGERLINE_METRICS=false
        return Response(
            b"metrics are off (LEDGERLINE_METRICS=false)\n", status_code=404, media_type="text/plain"
        )
    body = await anyio.to_thread.run_sync(services.metrics.render)  # the store's part queries it
    return Response(body, media_type=CONTENT_TYPE)
