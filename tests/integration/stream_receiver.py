"""A real webhook receiver for the streaming tests: an HTTP server on a loopback port that records
every request (headers, body) and answers what the test says (a status, after a delay)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    at: float  # time.monotonic() on arrival

    @property
    def entry(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded

    @property
    def position(self) -> int:
        return int(self.entry["position"])


class Receiver:
    def __init__(
        self,
        answer: Callable[[int], int] | None = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.answer = answer or (lambda n: 200)  # the status for the n-th request (0-based)
        self.delay = delay
        self.headers = headers or {}  # sent with every answer
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.monotonic()
                with receiver._lock:
                    n = len(receiver.requests)
                    status = receiver.answer(n)
                    receiver.requests.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, status, arrived)
                    )
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_positions(self) -> list[int]:
        return [r.position for r in self.accepted()]

    def verify_all(self, secret: str) -> None:
        """Every request carries a valid Standard Webhooks signature under ``secret``."""
        webhook = Webhook(secret)
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            webhook.verify(request.body, request.headers)


@contextmanager
def receiving(
    answer: Callable[[int], int] | None = None, delay: float = 0.0, headers: dict[str, str] | None = None
) -> Iterator[Receiver]:
    receiver = Receiver(answer, delay, headers)
    thread = threading.Thread(target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(timeout=5)


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True
