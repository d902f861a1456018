"""Read figures against running `ledgerline serve` processes:

auth_overhead_ratio   GET /users/me with an API key against GET /health, same server and load
as_of_ms              GET /users/{id}?version=N (and ?as_of=) for a user with a long history
audit_query_p99_ms    filtered audit queries over the bulk log: GET /audit-logs when the route
                      exists, else the same query in SQL on the audit_log view
revocation_visible_s  a key revoked through one process, until the other one refuses it
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
import psycopg

from bench.bulk import BulkLog
from bench.harness import Figure, Process, percentile
from bench.measure import CpuMeter, Load, Wrk, lua_strings, profiled

READ_CLIENTS = 16
AUDIT_ROUTE = "/api/v1/audit-logs"

GET_LUA = r"""
local keys = %(keys)s
local paths = %(paths)s
local n = 0
function request()
  n = n + 1
  local headers = {}
  if #keys > 0 then headers["X-API-Key"] = keys[tid %% #keys + 1] end
  return wrk.format("GET", paths[(n + tid) %% #paths + 1], headers)
end
"""


def get_load(
    server: Process, paths: list[str], keys: list[str], *, connections: int, seconds: float, threads: int = 2
) -> Wrk:
    script = GET_LUA % {"keys": lua_strings(keys), "paths": lua_strings(paths)}
    return Wrk(
        server.url, script, threads=min(threads, connections), connections=connections, seconds=seconds
    )


# ---- auth overhead ------------------------------------------------------------------------


def auth_overhead(server: Process, keys: list[str], seconds: float) -> Figure:
    runs: dict[str, Load] = {}
    cores: dict[str, dict[str, float]] = {}
    for name, paths, credentials in (("health", ["/health"], []), ("me", ["/api/v1/users/me"], keys)):
        get_load(server, paths, credentials, connections=READ_CLIENTS, seconds=2).run()  # warm-up
        with CpuMeter(server=server.pid) as cpu, profiled(server, f"get-{name}", seconds):
            load = get_load(server, paths, credentials, connections=READ_CLIENTS, seconds=seconds)
            runs[name] = load.run().check(f"GET {paths[0]}")
        cores[name] = cpu.cores
    return Figure(
        "auth_overhead_ratio",
        runs["me"].rps,
        "requests/s",
        "ratio >= 0.9",
        baseline=runs["health"].rps,
        extra={
            "me": runs["me"].summary(),
            "health": runs["health"].summary(),
            "cpu_cores": cores,
            "cpu_ms_per_request": {
                name: round(1000 * cores[name]["server"] / runs[name].rps, 3) for name in runs
            },
            "notes": f"wrk, {READ_CLIENTS} connections on 2 threads; value: GET /api/v1/users/me "
            f"with X-API-Key ({len(keys)} keys), baseline: GET /health",
        },
    )


def framework(server: Process, quiet: Process, bare: Process, keys: list[str], seconds: float) -> Figure:
    """GET /users/me with a key against a bare Litestar app's JSON answer (``bench.bare``),
    served the same way; the value with the access log on (as shipped) and off (``quiet``)."""
    runs: dict[str, Load] = {}
    cores: dict[str, dict[str, float]] = {}
    for name, target, path, credentials in (
        ("bare", bare, "/health", []),
        ("me", server, "/api/v1/users/me", keys),
        ("me_no_access_log", quiet, "/api/v1/users/me", keys),
        ("health_no_access_log", quiet, "/health", []),
    ):
        get_load(target, [path], credentials, connections=READ_CLIENTS, seconds=2).run()  # warm-up
        with CpuMeter(server=target.pid) as cpu:
            load = get_load(target, [path], credentials, connections=READ_CLIENTS, seconds=seconds)
            runs[name] = load.run().check(f"{name}: GET {path}")
        cores[name] = cpu.cores
    bare_rps = runs["bare"].rps
    return Figure(
        "framework_ratio",
        runs["me"].rps,
        "requests/s",
        "ratio >= 0.5",
        baseline=bare_rps,
        extra={
            "ratio_access_log_off": round(runs["me_no_access_log"].rps / bare_rps, 3),
            "health_ratio_access_log_off": round(runs["health_no_access_log"].rps / bare_rps, 3),
            **{name: run.summary() for name, run in runs.items()},
            "cpu_cores": cores,
            "notes": f"wrk, {READ_CLIENTS} connections on 2 threads; value: GET /api/v1/users/me with "
            f"X-API-Key ({len(keys)} keys) against `ledgerline serve` as shipped (JSON access log on); "
            "baseline: `python -m bench.bare` (a Litestar app answering a small msgspec struct, uvicorn, "
            "the same workers and socket options, no access log); *_no_access_log: a second serve "
            "with LEDGERLINE_ACCESS_LOG=false",
        },
    )


# ---- state as of a version ----------------------------------------------------------------


def as_of(
    server: Process,
    admin_key: str,
    user_id: UUID,
    versions: int,
    span: tuple[datetime, datetime],
    seconds: float,
) -> Figure:
    rng = random.Random(3)
    by_version = [f"/api/v1/users/{user_id}?version={rng.randint(1, versions)}" for _ in range(500)]
    width = (span[1] - span[0]).total_seconds()
    moments = [span[0] + timedelta(seconds=rng.uniform(0, width)) for _ in range(500)]
    by_time = [
        f"/api/v1/users/{user_id}?" + urlencode({"as_of": m.isoformat().replace("+00:00", "Z")})
        for m in moments
    ]
    runs = {}
    for name, paths in (("version", by_version), ("as_of", by_time)):
        get_load(server, paths, [admin_key], connections=1, seconds=1).run()  # warm-up
        with profiled(server, f"as-of-{name}", seconds):
            runs[name] = (
                get_load(server, paths, [admin_key], connections=1, seconds=seconds).run().check(name)
            )
    version = runs["version"]
    return Figure(
        "as_of_ms",
        version.p99_ms,
        "ms (p99)",
        "<= 50",
        extra={
            "p50_ms": round(version.p50_ms, 2),
            "version": version.summary(),
            "as_of": runs["as_of"].summary(),
            "as_of_p50_ms": round(runs["as_of"].p50_ms, 2),
            "as_of_p99_ms": round(runs["as_of"].p99_ms, 2),
            "history_events": versions,
            "notes": f"one client, sequential; value: p99 of ?version=N (random N in 1..{versions}); "
            "as_of_*: ?as_of=<random moment within the history>",
        },
    )


# ---- audit queries ------------------------------------------------------------------------


def audit_filters(log: BulkLog, head: int) -> dict[str, list[dict[str, Any]]]:
    """Query kinds over the bulk log, 100 parameter sets each."""
    rng = random.Random(5)
    width = (log.last - log.first).total_seconds()

    def day() -> dict[str, Any]:
        start = log.first + timedelta(seconds=rng.uniform(0, width - 86_400))
        return {"from": start, "to": start + timedelta(days=1)}

    def kind(make: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
        return [make() for _ in range(100)]

    return {
        "newest": kind(dict),
        "actor_user": kind(lambda: {"actor_id": rng.choice(log.users)}),
        "actor_operator": kind(lambda: {"actor_id": rng.choice(log.operators)}),
        "resource": kind(lambda: {"resource_type": "user", "resource_id": rng.choice(log.users)}),
        "action_rare": kind(lambda: {"action": "user.email_changed"}),
        "status_failure": kind(lambda: {"status": "failure"}),
        "time_day": kind(day),
        "action_and_day": kind(lambda: {"action": "user.profile_updated", **day()}),
        "operator_after": kind(
            lambda: {"actor_id": rng.choice(log.operators), "after_position": rng.randint(head // 4, head)}
        ),
    }


def _query_string(filters: dict[str, Any]) -> str:
    shown = {
        k: v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else str(v)
        for k, v in filters.items()
    }
    return urlencode(shown)


def audit_route_parameters(server: Process) -> set[str] | None:
    """The list route's query parameters, if the running server has the route."""
    document = httpx.get(server.url + "/schema/openapi.json", timeout=10).json()
    route = document.get("paths", {}).get(AUDIT_ROUTE, {}).get("get")
    return None if route is None else {p["name"] for p in route.get("parameters", [])}


def audit_query(server: Process, admin_key: str, url: str, log: BulkLog, head: int, seconds: float) -> Figure:
    kinds = audit_filters(log, head)
    parameters = audit_route_parameters(server)
    per_kind = max(2.0, seconds / 3)
    results: dict[str, dict[str, Any]] = {}
    if parameters is not None:
        how = f"HTTP GET {AUDIT_ROUTE}?...&per_page=100 (wrk, one client, sequential)"
        for name, sets in kinds.items():
            if any(key not in parameters for key in sets[0]):
                results[name] = {"skipped": f"route lacks {sorted(set(sets[0]) - parameters)}"}
                continue
            paths = [f"{AUDIT_ROUTE}?{_query_string({**f, 'per_page': 100})}" for f in sets]
            get_load(server, paths, [admin_key], connections=1, seconds=1).run()  # warm-up
            with profiled(server, f"audit-{name}", per_kind):
                load = get_load(server, paths, [admin_key], connections=1, seconds=per_kind).run()
            load.check(f"audit query {name}", tolerance=0)
            # min_position=0: the same query without first waiting for the read side to reach
            # the newest event written anywhere (the default read-your-writes wait)
            unwaited = [f"{path}&min_position=0" for path in paths]
            quick = get_load(server, unwaited, [admin_key], connections=1, seconds=1).run()
            results[name] = {
                "p50_ms": round(load.p50_ms, 2),
                "p99_ms": round(load.p99_ms, 2),
                "min_position_0_p50_ms": round(quick.check(name, tolerance=0).p50_ms, 2),
            }
        with psycopg.connect(url, autocommit=True) as conn:  # where a request's time goes, in SQL
            for name, sets in kinds.items():
                page, total = _sql_latencies(conn, sets, 0.5), _sql_latencies(conn, sets, 0.5, count=True)
                results[name] |= {"sql_page_p50_ms": page["p50_ms"], "sql_count_p50_ms": total["p50_ms"]}
    else:
        how = (
            "SQL on the audit_log view (no GET /audit-logs route in this build): the same "
            "WHERE, ORDER BY position DESC, LIMIT 100, one client, sequential"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            for name, sets in kinds.items():
                results[name] = _sql_latencies(conn, sets, per_kind)
    measured = {name: r for name, r in results.items() if "p99_ms" in r}
    worst = max(measured, key=lambda name: measured[name]["p99_ms"])
    return Figure(
        "audit_query_p99_ms",
        measured[worst]["p99_ms"],
        "ms (p99)",
        "<= 20",
        extra={
            "p50_ms": round(statistics.median(r["p50_ms"] for r in measured.values()), 2),
            "events": log.events,
            "by_filter": results,
            "notes": f"{how}; value: the worst p99 over the filter kinds ({worst}); each kind "
            f"{per_kind:.0f}s over 100 parameter sets; min_position_0_*: the same requests with "
            "min_position=0 (no wait for the read side to reach the newest event); sql_*: the page "
            "query alone (same WHERE, ORDER BY position DESC LIMIT 100) and the count of all "
            "matches, in SQL",
        },
    )


COLUMNS = {"from": "occurred_at >= %s", "to": "occurred_at < %s", "after_position": "position > %s"}


def _sql_latencies(
    conn: psycopg.Connection[Any], sets: list[dict[str, Any]], seconds: float, *, count: bool = False
) -> dict[str, Any]:
    """The page query (``count``: the count of every match instead), sequentially for
    ``seconds`` over the parameter sets."""
    timings, end, n = [], time.monotonic() + seconds, 0
    while time.monotonic() < end or n == 0:
        filters = sets[n % len(sets)]
        n += 1
        where = [COLUMNS.get(key, f"{key} = %s") for key in filters]
        sql = "SELECT count(*) FROM audit_log" if count else "SELECT * FROM audit_log"
        sql += (" WHERE " + " AND ".join(where)) if where else ""
        sql += "" if count else " ORDER BY position DESC LIMIT 100"
        started = time.perf_counter()
        conn.execute(sql, list(filters.values())).fetchall()
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(percentile(timings, 50), 2), "p99_ms": round(percentile(timings, 99), 2)}


# ---- revocation ---------------------------------------------------------------------------


def revocation(first: Process, second: Process, admin_key: str, trials: int) -> Figure:
    admin = {"X-API-Key": admin_key}
    seen: list[float] = []
    rng = random.Random(9)
    with (
        httpx.Client(base_url=first.url, headers=admin, timeout=10) as a,
        httpx.Client(base_url=second.url, timeout=10) as b,
    ):
        for trial in range(trials):
            made = a.post("/api/v1/api-keys", json={"name": f"revoke-{trial}-{time.time_ns()}",
                                                    "permissions": {"users:read": True}})  # fmt: skip
            made.raise_for_status()
            key, key_id = made.json()["data"]["key"], made.json()["data"]["id"]
            probe = {"X-API-Key": key}
            for _ in range(50):  # the second process knows (and caches) the new key
                if b.get("/api/v1/users/me", headers=probe).status_code == 200:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("the second process never accepted the new key")
            # B's watcher drops a key from its cache when it sees the key's events, Issued
            # included: let it pass that, and cache the key again, before the revocation.
            time.sleep(0.6)
            if b.get("/api/v1/users/me", headers=probe).status_code != 200:
                raise RuntimeError("the second process refused the new key")
            time.sleep(rng.uniform(0, 0.25))  # trials start at different phases of its poll
            a.post(f"/api/v1/api-keys/{key_id}/revoke").raise_for_status()
            revoked = time.perf_counter()
            while b.get("/api/v1/users/me", headers=probe).status_code != 401:
                if time.perf_counter() - revoked > 30:
                    raise RuntimeError("the second process still accepts a key revoked 30 s ago")
                time.sleep(0.005)
            seen.append(time.perf_counter() - revoked)
    return Figure(
        "revocation_visible_s",
        max(seen),
        "s (worst)",
        "<= 1",
        extra={
            "p50_s": round(statistics.median(seen), 3),
            "trials_s": [round(s, 3) for s in seen],
            "notes": "two `ledgerline serve` processes on one database; a key cached by process B "
            "is revoked through process A; time from A's answer until B answers 401 (polled "
            "every 5 ms); value: the worst of the trials",
        },
    )
