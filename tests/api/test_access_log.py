"""The access log (issue 12: written in batches, not through ``logging`` per request): one JSON
line per request with who and what, never the query string; off with LEDGERLINE_ACCESS_LOG=false."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator

import pytest

from api.access_log import FLUSH_SECONDS, AccessLog
from ledgerline import logs
from tests.api.conftest import Api

ME = "/api/v1/users/me"


def test_lines_wait_in_a_buffer_then_reach_standard_error_whole() -> None:
    read, write = os.pipe()
    os.set_blocking(read, False)
    log = AccessLog(fd=write)

    def pending() -> bytes:
        try:
            return os.read(read, 1 << 20)
        except BlockingIOError:
            return b""

    async def two_requests() -> tuple[bytes, bytes]:
        for status in (200, 404):
            log.record(method="GET", path=ME, route=ME, status=status, duration_ms=1.254, request_id="r1",
                       actor_id=None, credential_id=None)  # fmt: skip
        before = pending()
        await asyncio.sleep(FLUSH_SECONDS + 0.1)
        return before, pending()

    try:
        before, after = asyncio.run(two_requests())
    finally:
        os.close(write)
        os.close(read)
    assert before == b""  # no write per request
    lines = [json.loads(line) for line in after.splitlines()]
    assert [line["status"] for line in lines] == [200, 404]  # numbers as numbers (issue 14)
    assert lines[0] | {"time": None} == {
        "time": None, "level": "info", "logger": "ledgerline.access", "message": "GET /api/v1/users/me 200",
        "request_id": "r1", "method": "GET", "path": ME, "route": ME, "status": 200, "duration_ms": 1.25,
        "actor_id": None, "credential_id": None,
    }  # fmt: skip


@pytest.fixture
def logged() -> Iterator[None]:
    """The access log on, as ``ledgerline.logs.configure`` sets it in a served process."""
    logger = logging.getLogger("ledgerline.access")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)


def test_requests_are_logged_without_their_query_string(
    api: Api, logged: None, capfd: pytest.CaptureFixture[str]
) -> None:
    assert (
        api.client.get(ME, params={"min_position": 0, "token": "s3cret"}, headers=api.as_user()).status_code
        == 200
    )
    missing = api.client.get("/api/v1/no-such-route", headers={"X-Request-ID": "lost-1"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "lost-1"
    api.client.__exit__(None, None, None)  # the app's shutdown flushes the access log
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if '"ledgerline.access"' in line
    ]
    mine = [line for line in lines if line["path"] == ME]
    assert mine, lines
    assert mine[-1]["method"] == "GET" and mine[-1]["status"] == 200 and mine[-1]["level"] == "info"
    assert mine[-1]["actor_id"] == str(api.user_id) and mine[-1]["request_id"]
    assert isinstance(mine[-1]["duration_ms"], float) and mine[-1]["route"] == ME
    # Answered by Litestar's router, before any route's middleware: logged all the same.
    (lost,) = [line for line in lines if line["request_id"] == "lost-1"]
    assert lost["status"] == 404 and lost["route"] is None and lost["actor_id"] is None
    assert all("s3cret" not in json.dumps(line) and "min_position" not in json.dumps(line) for line in lines)


def test_the_access_log_can_be_turned_off(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    root, access = logging.getLogger(), logging.getLogger("ledgerline.access")
    handlers, levels = list(root.handlers), (root.level, access.level)
    logs.configure(access=False)  # what LEDGERLINE_ACCESS_LOG=false configures
    try:
        assert api.client.get(ME, headers=api.as_user()).status_code == 200
        api.client.__exit__(None, None, None)
    finally:
        root.handlers[:] = handlers
        root.setLevel(levels[0])
        access.setLevel(levels[1])
    assert '"ledgerline.access"' not in capfd.readouterr().err
