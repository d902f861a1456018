"""A bare Litestar app answering a small JSON struct, served exactly as `ledgerline serve` serves
(uvicorn with uvloop and httptools, LEDGERLINE_WORKERS processes sharing one listening socket
with TCP_NODELAY, no access log): the ceiling the framework and server put on any request here,
the baseline of `framework_ratio`.

    LEDGERLINE_PORT=8001 LEDGERLINE_WORKERS=2 python -m bench.bare
"""

from __future__ import annotations

import os

import msgspec
import uvicorn
from litestar import Litestar, get
from uvicorn.supervisors import Multiprocess

from ledgerline.asgi import listening_socket


class Answer(msgspec.Struct):
    status: str
    version: str


@get("/health", sync_to_thread=False)
def health() -> Answer:
    return Answer(status="ok", version="0")


def create() -> Litestar:
    return Litestar([health], logging_config=None)


def main() -> None:
    workers = int(os.environ.get("LEDGERLINE_WORKERS", "1"))
    config = uvicorn.Config(
        "bench.bare:create", factory=True, workers=workers, host="127.0.0.1",
        port=int(os.environ.get("LEDGERLINE_PORT", "8001")), log_config=None, access_log=False,
    )  # fmt: skip
    if workers == 1:
        uvicorn.Server(config).run(sockets=[listening_socket(config)])
    else:
        Multiprocess(config, sockets=[listening_socket(config)]).run()


if __name__ == "__main__":
    main()
