"""Where ``ledgerline audit witness`` publishes the checkpoints it accepted, outside the log's
database: a file of JSON lines, and NATS JetStream.

``FileSink`` appends ``{"origin", "size", "root_hash" (base64), "note", "witnessed_at"}`` per
checkpoint. ``NatsSink`` publishes the note to stream ``LEDGERLINE_CHECKPOINTS``, subject
``ledgerline.checkpoints.<origin>``, with ``Nats-Msg-Id: <origin>/<size>/<root hex>`` so a retry
is deduplicated while two roots for one size (a split view) are both kept.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from eventstore.audit_chain.note import Checkpoint

STREAM = "LEDGERLINE_CHECKPOINTS"
SUBJECT_PREFIX = "ledgerline.checkpoints"


class Unreachable(Exception):
    """The log or a sink could not be reached or answered wrongly (never names a credential)."""


def redacted(url: str) -> str:
    """A URL without credentials, query or fragment: safe to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def subject_for(origin: str, prefix: str = SUBJECT_PREFIX) -> str:
    return f"{prefix}.{re.sub(r'[^A-Za-z0-9_-]', '_', origin)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Sink(Protocol):
    def publish(self, checkpoint: Checkpoint, note: str) -> None: ...


class FileSink:
    """Appends one JSON line per accepted checkpoint (not again if the last line is the same)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _last_line(self) -> bytes:
        try:
            with self.path.open("rb") as file:
                end = file.seek(0, os.SEEK_END)
                file.seek(max(0, end - (2 << 20)))  # a note is at most 1 MiB
                return file.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        except FileNotFoundError:
            return b""

    def publish(self, checkpoint: Checkpoint, note: str) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            last = json.loads(self._last_line())
            if (last["origin"], last["size"], last["note"]) == (checkpoint.origin, checkpoint.size, note):
                return
        entry = {
            "origin": checkpoint.origin,
            "size": checkpoint.size,
            "root_hash": _b64(checkpoint.root_hash),
            "note": note,
            "witnessed_at": datetime.now(UTC).isoformat(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            file.write(json.dumps(entry).encode() + b"\n")
            file.flush()
            os.fsync(file.fileno())


def message_id(checkpoint: Checkpoint) -> str:
    """JetStream's deduplication key: a retry of one checkpoint, never another root."""
    return f"{checkpoint.origin}/{checkpoint.size}/{checkpoint.root_hash.hex()}"


class NatsSink:
    """Publishes each note to JetStream, creating the stream when it is missing."""

    def __init__(
        self, url: str, stream: str = STREAM, prefix: str = SUBJECT_PREFIX, timeout: float = 15.0
    ) -> None:
        self.url, self.stream, self.prefix, self.timeout = url, stream, prefix, timeout

    def publish(self, checkpoint: Checkpoint, note: str) -> None:
        try:
            asyncio.run(asyncio.wait_for(self._publish(checkpoint, note), self.timeout))
        except Exception as error:  # nats-py raises its own types, timeouts and OSErrors
            where = redacted(self.url)
            raise Unreachable(f"cannot publish to NATS at {where}: {type(error).__name__}") from None

    async def _publish(self, checkpoint: Checkpoint, note: str) -> Any:
        import nats
        from nats.js.errors import NotFoundError

        async def quiet(_: Exception) -> None:  # failures are reported once, by publish
            return None

        client = await nats.connect(  # one attempt per server (0 would retry without end)
            self.url,
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=quiet,
        )
        try:
            jetstream = client.jetstream(timeout=5)
            try:
                await jetstream.stream_info(self.stream)
            except NotFoundError:
                await jetstream.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])
            return await jetstream.publish(
                subject_for(checkpoint.origin, self.prefix),
                note.encode(),
                stream=self.stream,
                headers={"Nats-Msg-Id": message_id(checkpoint)},
            )
        finally:
            await client.close()
