"""commands_per_s: non-password commands over HTTP from 16 concurrent clients, next to raw
psycopg single-row INSERT + COMMIT from 16 connections, in the same run on the same server.

Each wrk thread is one client with its own user and API key (so clients never contend for one
aggregate); it alternates ``PATCH /users/me`` (a profile change: one event) and
``POST /api-keys`` (a new key: key, key ring and digest reservation in one append).
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import psycopg

from bench.harness import Figure, Process, wait_for_connections
from bench.measure import CpuMeter, DbSampler, Wrk, lua_strings, profiled

CLIENTS = 16
RAW_PROCESSES = 2  # 16 connections from 2 processes of 8 threads: the client is no bottleneck

COMMANDS_LUA = r"""
local keys = %(keys)s
local nonce = "%(nonce)s"
local n = 0
function request()
  n = n + 1
  local headers = {["X-API-Key"] = keys[tid + 1], ["Content-Type"] = "application/json"}
  if n %% 2 == 0 then
    return wrk.format("PATCH", "/api/v1/users/me", headers, '{"full_name":"Bench ' .. n .. '"}')
  end
  return wrk.format("POST", "/api/v1/api-keys", headers,
    '{"name":"' .. nonce .. '-' .. n .. '","permissions":{"users:read":true}}')
end
"""


def _raw_commits(url: str, threads: int, begin_at: float, seconds: float) -> int:
    """Single-row INSERT + COMMIT in a loop on each of ``threads`` connections; how many."""
    counts = [0] * threads
    failures: list[BaseException] = []

    def loop(index: int) -> None:
        try:
            with psycopg.connect(url) as conn:
                while time.time() < begin_at:
                    time.sleep(0.001)
                end = begin_at + seconds
                while time.time() < end:
                    conn.execute("INSERT INTO raw_commits (body) VALUES (%s)", (b"x" * 300,))
                    conn.commit()
                    counts[index] += 1
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise RuntimeError(f"a raw-commit client failed: {failures[0]!r}")
    return sum(counts)


def raw_commit_rate(url: str, seconds: float) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_commits (id bigserial PRIMARY KEY, body bytea)")
    try:
        with ProcessPoolExecutor(RAW_PROCESSES, mp_context=get_context("spawn")) as pool:
            begin_at = time.time() + 3  # once every process has started
            done = [
                pool.submit(_raw_commits, url, CLIENTS // RAW_PROCESSES, begin_at, seconds)
                for _ in range(RAW_PROCESSES)
            ]
            total = sum(f.result() for f in done)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE raw_commits")
    return total / seconds


def measure(server: Process, projector: Process, keys: list[str], url: str, seconds: float) -> Figure:
    wait_for_connections(url, CLIENTS + 10)  # the server is shared and allows 100
    baseline = raw_commit_rate(url, seconds)

    def load(duration: float) -> Wrk:
        script = COMMANDS_LUA % {"keys": lua_strings(keys), "nonce": uuid.uuid4().hex[:8]}
        return Wrk(server.url, script, threads=CLIENTS, connections=CLIENTS, seconds=duration)

    load(2).run()  # warm-up: credential caches, connection pools
    with (
        CpuMeter(server=server.pid, projector=projector.pid) as cpu,
        DbSampler(url) as db,
        profiled(server, "commands", seconds),
    ):
        result = load(seconds).run().check("commands")
    return Figure(
        "commands_per_s",
        result.rps,
        "commands/s",
        ">= 3000 and ratio >= 0.25",
        baseline=baseline,
        extra={
            **result.summary(),
            "cpu_cores": cpu.cores,
            "db_active_sessions": db.average(),
            "notes": f"{CLIENTS} wrk clients (own user and key each), alternating PATCH /users/me "
            f"and POST /api-keys against one `ledgerline serve`; baseline: {CLIENTS} psycopg "
            f"connections ({RAW_PROCESSES} processes) doing single-row INSERT + COMMIT",
        },
    )
