"""Where entries go: a webhook (Standard Webhooks: signed POST, one entry per request) or NATS
JetStream. ``deliver`` returns once the receiver acknowledged (2xx; a JetStream publish ack), or
raises ``DeliveryError`` with a short reason fit for ``last_error`` (never the receiver's text)."""

from __future__ import annotations

import asyncio
import functools
import re
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import httpx
import msgspec
from standardwebhooks import Webhook

from domain.errors import InvalidValueError
from projections.streaming.targets import Resolve, Target, TargetPolicy, check_target_async

NATS_STREAM = "LEDGERLINE_AUDIT"
NATS_SUBJECT_PREFIX = "ledgerline.audit"
MAX_ANSWER = 64 * 1024  # bytes of a receiver's answer read before the connection is dropped
RESOLVED_FOR = 1.0  # seconds a checked address is reused (connections go to it, never to a re-lookup)
_encoder = msgspec.json.Encoder()


class DeliveryError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sink(Protocol):
    name: str

    async def deliver(self, entry: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


def entry_body(entry: dict[str, Any]) -> bytes:
    """The entry as JSON, as the API's ``GET /audit-logs/{position}`` encodes its ``data``."""
    return _encoder.encode(entry)


def webhook_id(subscription_id: UUID, position: int) -> str:
    """Stable across retries of one entry to one subscription; different for every other pair."""
    return f"msg_{subscription_id.hex}_{position}"


class WebhookSink:
    def __init__(
        self,
        name: str,
        subscription_id: UUID,
        url: str,
        secret: str,
        policy: TargetPolicy,
        timeout: float,
        resolve: Resolve | None = None,
    ) -> None:
        """``resolve``: ``socket.getaddrinfo``'s shape (tests pass a DNS answer)."""
        self.name, self.subscription_id, self.url, self.policy = name, subscription_id, url, policy
        self.timeout, self._resolve = timeout, resolve
        # Lookups block a thread: this sink's own, so a name that never answers holds up only
        # this sink (not the loop's default executor, which every other sink's database work uses).
        self._dns = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dns-{name}")
        self._signer = Webhook(secret)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False, http2=False
        )
        self._target: tuple[float, Target] | None = None

    async def _checked_target(self) -> Target:
        now = time.monotonic()
        if self._target is None or now - self._target[0] > RESOLVED_FOR:
            self._target = (now, await check_target_async(self.url, self.policy, self._lookup))
        return self._target[1]

    async def _lookup(self, host: str, port: int, **kwargs: Any) -> Sequence[Any]:
        resolve = self._resolve or socket.getaddrinfo
        return await asyncio.get_running_loop().run_in_executor(
            self._dns, functools.partial(resolve, host, port, **kwargs)
        )

    async def deliver(self, entry: dict[str, Any]) -> None:
        body = entry_body(entry)
        message_id = webhook_id(self.subscription_id, entry["position"])
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "Ledgerline-Webhooks",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(message_id, now, body),
        }
        try:
            async with asyncio.timeout(self.timeout):  # the lookup included
                target = await self._checked_target()
                status = await self._post(target, headers, body)
        except InvalidValueError as refused:  # TargetRefusedError, or a URL stored before a rule
            raise DeliveryError(f"target refused: {refused.message}") from None
        except httpx.InvalidURL:
            raise DeliveryError("target refused: not a valid URL") from None
        except (TimeoutError, httpx.TimeoutException):
            raise DeliveryError("timeout") from None
        except (httpx.HTTPError, OSError) as error:
            raise DeliveryError(f"connection failed ({type(error).__name__})") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")

    async def _post(self, target: Target, headers: dict[str, str], body: bytes) -> int:
        """POST to the checked address, naming the host in ``Host`` and TLS (SNI, certificate)."""
        pinned = httpx.URL(self.url).copy_with(host=target.address)  # httpx brackets IPv6
        host_header = httpx.URL(self.url).netloc.decode("ascii")
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = self._client.build_request(
            "POST", pinned, headers={**headers, "host": host_header}, content=body, extensions=extensions
        )
        response = await self._client.send(request, stream=True)
        try:  # a short answer is read (the connection is kept); a long one is not wanted
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_ANSWER:
                    break
        finally:
            await response.aclose()
        return response.status_code

    async def close(self) -> None:
        await self._client.aclose()
        self._dns.shutdown(wait=False, cancel_futures=True)  # a lookup in flight ends on its own


def nats_subject(entry: dict[str, Any]) -> str:
    def token(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_"

    resource, action = entry["resource_type"], entry["action"].split(".", 1)[-1]
    return f"{NATS_SUBJECT_PREFIX}.{token(resource)}.{token(action)}"


class NatsSink:
    """Publishes each entry to JetStream (stream ``LEDGERLINE_AUDIT``, created when missing) with
    ``Nats-Msg-Id`` = its position, so a re-sent entry is dropped by the server's deduplication."""

    def __init__(self, name: str, url: str, timeout: float) -> None:
        self.name, self.url, self.timeout = name, url, timeout
        self._client: Any = None
        self._jetstream: Any = None

    async def _connect(self) -> Any:
        if self._jetstream is not None and self._client.is_connected:
            return self._jetstream
        await self.close()
        import nats
        from nats.js.errors import NotFoundError

        async def quiet(_: Exception) -> None:  # failures are reported by deliver
            return None

        self._client = await nats.connect(
            self.url,
            connect_timeout=self.timeout,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=quiet,
        )
        jetstream = self._client.jetstream(timeout=self.timeout)
        try:
            await jetstream.stream_info(NATS_STREAM)
        except NotFoundError:
            await jetstream.add_stream(name=NATS_STREAM, subjects=[f"{NATS_SUBJECT_PREFIX}.>"])
        self._jetstream = jetstream
        return jetstream

    async def deliver(self, entry: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                jetstream = await self._connect()
                await jetstream.publish(
                    nats_subject(entry),
                    entry_body(entry),
                    stream=NATS_STREAM,
                    headers={"Nats-Msg-Id": str(entry["position"])},
                )
        except Exception as error:  # nats-py raises its own types, timeouts and OSErrors
            await self.close()
            raise DeliveryError(f"NATS publish failed ({type(error).__name__})") from None

    async def close(self) -> None:
        client, self._client, self._jetstream = self._client, None, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # already gone
                return
