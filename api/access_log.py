"""The access log: one JSON line per request, in the format of the process's other log lines
(``ledgerline.logs``), written in batches.

Going through ``logging`` per request (a record, a formatter, a lock, a write) cost about a third
of a small GET's throughput; here a line is one msgspec encoding appended to a buffer, and the
buffer is written to standard error when it holds 64 KiB or 0.2 s after its first line, and at
shutdown. A process killed outright loses at most that last fraction of a second of lines.
``LEDGERLINE_ACCESS_LOG=false`` (the ``ledgerline.access`` logger above INFO) turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from uuid import UUID

import msgspec

LOGGER = logging.getLogger("ledgerline.access")
FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 0.2


class _Line(msgspec.Struct):
    time: str
    level: str
    logger: str
    message: str
    request_id: str
    method: str
    path: str
    route: str | None  # the route's template (``/api/v1/users/{user_id:uuid}``); null: none matched
    status: int
    duration_ms: float
    actor_id: UUID | None
    credential_id: UUID | None


_encoder = msgspec.json.Encoder()


class AccessLog:
    def __init__(self, fd: int = 2) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return LOGGER.isEnabledFor(logging.INFO)

    def record(
        self,
        *,
        method: str,
        path: str,  # never the query string: it may carry tokens
        route: str | None,
        status: int,
        duration_ms: float,
        request_id: str,
        actor_id: UUID | None,
        credential_id: UUID | None,
    ) -> None:
        line = _Line(
            time=datetime.now(UTC).isoformat(),
            level="info",
            logger=LOGGER.name,
            message=f"{method} {path} {status}",
            request_id=request_id,
            method=method,
            path=path,
            route=route,
            status=status,
            duration_ms=round(duration_ms, 2),
            actor_id=actor_id,
            credential_id=credential_id,
        )
        self._buffer += _encoder.encode(line)
        self._buffer += b"\n"
        if len(self._buffer) >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        view = memoryview(bytes(self._buffer))
        self._buffer = bytearray()
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BlockingIOError:  # a non-blocking pipe is full: the rest waits for the next flush
            self._buffer[:0] = view
        except OSError:  # standard error closed: nothing else to write to
            return
