"""The two routes ``ledgerline audit witness`` reads from the log, read defensively: every body
is streamed and capped (a checkpoint note at 1 MiB, signed-note's own limit; a consistency answer
at 64 KiB), compressed bodies are refused rather than inflated, a slow body is cut at a deadline,
and no redirect is ever followed.

Redirects: httpx follows none by default (``follow_redirects=False`` on ``httpx.Client`` and on
each request); when asked to follow, it drops only ``Authorization`` on a cross-origin hop, so the
``X-API-Key`` header would go to whatever host the log names. Every request here passes
``follow_redirects=False`` itself, which overrides a client an embedding program hands in.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from eventstore.audit_chain.note import MAX_NOTE_BYTES
from ledgerline.checkpoint_sinks import Unreachable, redacted

MAX_CHECKPOINT_BYTES = MAX_NOTE_BYTES  # 1 MiB
MAX_CONSISTENCY_BYTES = 64 << 10
READ_SECONDS = 30.0  # a whole response, however slowly it trickles in
HASH_BYTES = 32


class BadAnswer(Exception):
    """The log answered 200, but not with what was asked: it misbehaves (never "unreachable")."""

    def __init__(self, detail: str, answer: bytes = b"") -> None:
        super().__init__(detail)
        self.answer = answer


@dataclass(frozen=True)
class Body:
    data: bytes
    cut: bool  # the log sent more than the cap: ``data`` is its first cap bytes


class LogClient:
    """``GET /api/v1/audit-logs/checkpoint`` and ``/consistency``; ``client`` is injectable (tests
    use the in-process app or a mock transport)."""

    def __init__(self, base_url: str, api_key: str, client: httpx.Client | None = None) -> None:
        self.base = base_url.rstrip("/") + "/api/v1/audit-logs"
        self._headers = {"X-API-Key": api_key, "Accept-Encoding": "identity"}
        self._client = client or httpx.Client(timeout=10.0, follow_redirects=False)
        self._owned = client is None

    def _get(self, path: str, limit: int, params: dict[str, int] | None = None) -> Body:
        url = self.base + path
        where = f"cannot fetch {redacted(url)}"
        body = bytearray()
        try:
            with self._client.stream(
                "GET", url, params=params, headers=self._headers, follow_redirects=False
            ) as response:
                if response.status_code != 200:
                    moved = response.headers.get("location") if response.is_redirect else None
                    hint = f" (a redirect to {redacted(moved)}: not followed)" if moved is not None else ""
                    raise Unreachable(f"{where}: HTTP {response.status_code}{hint}")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise Unreachable(f"{where}: a {encoding} body though identity was asked (not inflated)")
                deadline = time.monotonic() + READ_SECONDS
                for chunk in response.iter_bytes():  # identity: the bytes as sent
                    body += chunk
                    if len(body) > limit:
                        return Body(bytes(body[:limit]), cut=True)
                    if time.monotonic() > deadline:
                        raise Unreachable(f"{where}: the body took over {READ_SECONDS:.0f}s")
        except httpx.HTTPError as error:
            raise Unreachable(f"{where}: {type(error).__name__} {error}") from None
        return Body(bytes(body), cut=False)

    def checkpoint(self) -> Body:
        return self._get("/checkpoint", MAX_CHECKPOINT_BYTES)

    def consistency(self, first: int, second: int) -> list[bytes]:
        """The proof ``first`` -> ``second``; ``Unreachable`` when not given, ``BadAnswer`` when the
        answer is not that proof (other sizes, not a list of base64 32-byte hashes, too large)."""
        body = self._get("/consistency", MAX_CONSISTENCY_BYTES, {"from": first, "to": second})
        if body.cut:
            raise BadAnswer(f"an answer over {MAX_CONSISTENCY_BYTES} bytes", body.data)
        try:
            return parse_consistency(json.loads(body.data), first, second)
        except (ValueError, UnicodeError) as error:  # json's errors are ValueErrors too
            raise BadAnswer(f"{error} (asked {first} -> {second})", body.data) from None

    def close(self) -> None:
        if self._owned:
            self._client.close()


def parse_consistency(answer: Any, first: int, second: int) -> list[bytes]:
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object with a data object")
    sizes = data.get("from"), data.get("to")
    if any(type(size) is not int for size in sizes) or sizes != (first, second):  # bool is no size
        raise ValueError(f"a proof between {sizes[0]!r} and {sizes[1]!r}")
    proof = data.get("proof")
    if not isinstance(proof, list):
        raise ValueError("a proof that is not a list")
    hashes = []
    for item in proof:
        try:
            node = base64.b64decode(item, validate=True) if isinstance(item, str) else b""
        except (binascii.Error, ValueError):
            node = b""
        if len(node) != HASH_BYTES:
            raise ValueError(f"a proof element not a base64 {HASH_BYTES}-byte hash: {str(item)[:60]!r}")
        hashes.append(node)
    return hashes
