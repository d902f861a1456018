"""The log's Merkle tree (issue 11): what extending it in each append's transaction costs, what
its proofs and ``verify --since`` cost on the bulk log.

tree_backfill_events_per_s  ``eventstore.audit_chain.tree.backfill`` over the COPY-loaded bulk
                            log (``bench.bulk.write_log`` runs it; the tree must cover the log
                            before anything appends through the recorder)
verify_since_events_per_s   ``verify_log(..., since=<a signed checkpoint of an early size>)``
                            over the whole log
inclusion_proof_p99_ms      ``GET /audit-logs/{position}/proof[?tree_size=N]``, random positions
consistency_proof_p99_ms    ``GET /audit-logs/consistency?from=M&to=N``, random sizes
                            (both: one client; the tree.py functions over a SQLAlchemy
                            connection when the running server lacks the route)
tree_commands_ratio         the commands_per_s mix against two fresh `serve` processes, one as
                            shipped, one whose appends skip the tree (``bench.tree_off``),
                            alternating rounds in one run
"""

from __future__ import annotations

import random
import re
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import Connection

from bench.bulk import BulkLog
from bench.harness import Deployment, Figure, Process, Scale, percentile, wait_for_connections
from bench.measure import CpuMeter, DbSampler, LoadError, Wrk, lua_strings, profiled
from bench.reads import get_load
from bench.writes import CLIENTS, COMMANDS_LUA
from eventstore.audit_chain.checkpoints import note_for
from eventstore.audit_chain.merkle import verify_consistency, verify_inclusion
from eventstore.audit_chain.records import iter_records, leaf_hashes
from eventstore.audit_chain.tree import consistency_with_root, inclusion_with_root, root_at, stored_size
from eventstore.audit_chain.verify import verify_log
from ledgerline.bootstrap import Components

SAMPLE = 100_000  # events read (and hashed) alone, to tell what bounds verify
CHECKED = 50  # proofs of each kind checked against the roots (outside the timing)
ROUNDS = 4  # tree on / tree off, alternating which goes first
PROOF_ROUTE = re.compile(r"^/api/v1/audit-logs/\{[^}/]+\}/proof$")
CONSISTENCY_ROUTE = "/api/v1/audit-logs/consistency"
SAMPLED = {
    "inclusion": "positions, half in the latest tree, half with a random tree_size >= position",
    "consistency": "(from, to) pairs, half to the latest tree, half to a random earlier size",
}


# ---- backfill -----------------------------------------------------------------------------


def backfill_figure(log: BulkLog) -> Figure:
    covered = log.tree_size - log.tree_size_before
    return Figure(
        "tree_backfill_events_per_s",
        covered / log.tree_seconds,
        "events/s",
        "",
        extra={
            "events": covered,
            "seconds": round(log.tree_seconds, 1),
            "tree_size": log.tree_size,
            "load_events_per_s": round(log.events / log.seconds),
            "notes": "eventstore.audit_chain.tree.backfill (events table locked, leaves and nodes "
            "in 2,000-event batches, one transaction) right after the COPY of the bulk log, which "
            "bypasses the recorder; load_events_per_s: the bulk load itself (domain + mapper in "
            "worker processes + COPY), for scale",
        },
    )


# ---- verify --since -----------------------------------------------------------------------


def verify_since(components: Components) -> Figure:
    """``verify_log`` over the whole log, holding it to a checkpoint an auditor kept early on
    (1% into the log), signed and opened as ``audit checkpoint`` / ``verify --since`` would."""
    keys, engine = components.checkpoint_keys, components.engine
    with engine.connect() as conn:
        size = stored_size(conn)
        early = max(1, size // 100)
        kept = keys.open(note_for(conn, keys, early, root_at(conn, early)))
        sample = _record_rates(conn, min(SAMPLE, size))
    started = time.perf_counter()
    report = verify_log(engine, components.settings.database, keys.trusted, keys.origin, since=kept)
    seconds = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(
            f"verify_log failed on the bench log at {report.first_bad_position}: {report.reason}"
        )
    return Figure(
        "verify_since_events_per_s",
        report.events_verified / seconds,
        "events/s",
        "",
        extra={
            "events": report.events_verified,
            "seconds": round(seconds, 1),
            "tree_size": report.tree_size,
            "since_size": kept.size,
            "checkpoints_verified": report.checkpoints_verified,
            **sample,
            "notes": "eventstore.audit_chain.verify.verify_log(engine, database, trusted keys, origin, "
            f"since=<signed checkpoint of size {kept.size:,}>) in the bench process over the whole "
            "log (recomputes every leaf and node, compares each with the stored one); "
            f"read_*: over the first {min(SAMPLE, size):,} events, reading the stored records alone "
            "(keyset pages of 2,000) and reading plus hashing their leaves",
        },
    )


def _record_rates(conn: Connection, events: int) -> dict[str, int]:
    rates = {}
    for label, hashing in (("read_records_events_per_s", False), ("read_and_hash_events_per_s", True)):
        started, done, batch, position = time.perf_counter(), 0, [], 0
        for record in iter_records(conn, None, release=True):
            batch.append(record)
            if len(batch) == 2000 or done + len(batch) >= events:
                if hashing:
                    leaf_hashes(batch, position)
                position, done, batch = batch[-1].position, done + len(batch), []
                if done >= events:
                    break
        rates[label] = round(done / (time.perf_counter() - started))
    return rates


# ---- proofs -------------------------------------------------------------------------------


def proof_routes(server: Process) -> tuple[str | None, bool]:
    """The inclusion-proof route's path template and whether the consistency route exists."""
    paths = httpx.get(server.url + "/schema/openapi.json", timeout=10).json().get("paths", {})
    inclusion = next((p for p in paths if PROOF_ROUTE.match(p) and "get" in paths[p]), None)
    return inclusion, "get" in paths.get(CONSISTENCY_ROUTE, {})


def proofs(server: Process, admin_key: str, components: Components, scale: Scale) -> list[Figure]:
    """Inclusion and consistency proofs at random positions and sizes of the whole log: half of
    them in the latest tree, half in a random earlier one; one client. Through the routes when
    the server has them, and always also the tree.py functions alone (``tree_py_*``)."""
    rng = random.Random(11)
    engine = components.engine
    with engine.connect() as conn:
        size = stored_size(conn)
        checked = _check_proofs(conn, rng, size)
    samples: dict[str, list[tuple[int, int | None]]] = {"inclusion": [], "consistency": []}
    for n in range(1000):  # (leaf index or earlier size, tree size or None: the latest)
        index = rng.randrange(size)
        samples["inclusion"].append((index, None if n % 2 else rng.randint(index + 1, size)))
        first = rng.randint(1, size - 1)
        samples["consistency"].append((first, None if n % 2 else rng.randint(first + 1, size)))
    template, has_consistency = proof_routes(server)
    routes = {"inclusion": template, "consistency": CONSISTENCY_ROUTE if has_consistency else None}
    seconds = scale.seconds
    figures = []
    for kind in ("inclusion", "consistency"):
        alone = _in_process(engine, kind, samples[kind], max(2.0, seconds / 2))
        result, route = alone, routes[kind]
        how = f"no {kind} route in this build, so "
        if route is not None:
            paths = [_proof_path(route, kind, sample) for sample in samples[kind]]
            refused = _refused(server, admin_key, paths[:2])
            how = f"the route answered {refused}, so "
            if refused is None:
                get_load(server, paths, [admin_key], connections=1, seconds=1).run()  # warm-up
                with profiled(server, f"proof-{kind}", seconds):
                    load = get_load(server, paths, [admin_key], connections=1, seconds=seconds).run()
                load.check(f"{kind} proofs", tolerance=0.01)
                result = {"p50_ms": load.p50_ms, "p99_ms": load.p99_ms, "max_ms": load.max_ms,
                          "proofs": load.requests, "errors": load.errors}  # fmt: skip
                how = f"HTTP GET {route} (wrk, one client, sequential, admin key)"
        if result is alone:
            how += f"eventstore.audit_chain.tree.{kind}_path over a SQLAlchemy connection, sequential"
        figures.append(
            Figure(
                f"{kind}_proof_p99_ms",
                result["p99_ms"],
                "ms (p99)",
                "<= 5",
                extra={
                    "p50_ms": round(result["p50_ms"], 2),
                    "max_ms": round(result["max_ms"], 2),
                    "proofs": result["proofs"],
                    **({"errors": result["errors"]} if "errors" in result else {}),
                    "tree_py_p50_ms": round(alone["p50_ms"], 2),
                    "tree_py_p99_ms": round(alone["p99_ms"], 2),
                    "tree_size": size,
                    "checked_against_roots": checked[kind],
                    "notes": f"{how}; {len(samples[kind])} random {SAMPLED[kind]}, {seconds:.0f}s; "
                    f"tree_py_*: eventstore.audit_chain.tree.{kind}_path alone over a SQLAlchemy "
                    "connection in the bench process (the stored nodes' one query; no HTTP, auth, "
                    "checkpoint or leaf), sequential; checked_against_roots: proofs of the same "
                    "kind verified (RFC 9162 algorithms, merkle.verify_*) against root_at before "
                    "timing",
                },
            )
        )
    return figures


def _proof_path(route: str, kind: str, sample: tuple[int, int | None]) -> str:
    if kind == "inclusion":
        index, tree_size = sample
        path = re.sub(r"\{[^}/]+\}", str(index + 1), route)
        return path if tree_size is None else f"{path}?tree_size={tree_size}"
    first, tree_size = sample
    return f"{route}?from={first}" + ("" if tree_size is None else f"&to={tree_size}")


def _refused(server: Process, admin_key: str, paths: list[str]) -> str | None:
    for path in paths:
        answer = httpx.get(server.url + path, headers={"X-API-Key": admin_key}, timeout=10)
        if answer.status_code != 200:
            return f"{answer.status_code} to GET {path}"
    return None


def _in_process(
    engine: Any, kind: str, samples: list[tuple[int, int | None]], seconds: float
) -> dict[str, Any]:
    timings: list[float] = []
    with engine.connect() as conn:
        size = stored_size(conn)
        prove: Callable[[tuple[int, int | None]], object] = (
            (lambda s: inclusion_with_root(conn, s[0], s[1] or size))
            if kind == "inclusion"
            else (lambda s: consistency_with_root(conn, s[0], s[1] or size))
        )
        end, n = time.monotonic() + 0.5, 0
        while time.monotonic() < end:  # warm-up
            prove(samples[n % len(samples)])
            n += 1
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sample = samples[n % len(samples)]
            n += 1
            started = time.perf_counter()
            prove(sample)
            timings.append((time.perf_counter() - started) * 1000)
            conn.rollback()  # no snapshot held across the run
    return {
        "p50_ms": percentile(timings, 50),
        "p99_ms": percentile(timings, 99),
        "max_ms": max(timings),
        "proofs": len(timings),
    }


def _check_proofs(conn: Connection, rng: random.Random, size: int) -> dict[str, int]:
    """Proofs are what they claim (else the timings would be of something else)."""
    for _ in range(CHECKED):
        tree_size = rng.choice((size, rng.randint(1, size)))
        index = rng.randrange(tree_size)
        leaf, path, root = inclusion_with_root(conn, index, tree_size)
        if not verify_inclusion(index, tree_size, leaf, path, root_at(conn, tree_size)) or root != root_at(
            conn, tree_size
        ):
            raise RuntimeError(f"the inclusion proof of leaf {index} in tree {tree_size} does not verify")
        first = rng.randint(1, tree_size)
        path, _ = consistency_with_root(conn, first, tree_size)
        if not verify_consistency(first, tree_size, root_at(conn, first), root_at(conn, tree_size), path):
            raise RuntimeError(f"the consistency proof {first} -> {tree_size} does not verify")
    return {"inclusion": CHECKED, "consistency": CHECKED}


# ---- commands with and without the tree ---------------------------------------------------

COVERAGE_SQL = (
    "SELECT (SELECT COALESCE(MAX(notification_id), 0) FROM identity_events), "
    "(SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_tree_nodes WHERE level = 0)"
)


def _uncovered(conn: psycopg.Connection[Any]) -> int:
    """Events past the tree's last leaf."""
    head, leaves = conn.execute(COVERAGE_SQL).fetchone() or (0, 0)
    return int(head) - int(leaves)


def commands_ratio(
    deployment: Deployment, projector: Process, keys: list[str], url: str, seconds: float
) -> Figure:
    """commands_per_s's load against a `serve` that extends the tree (as shipped) and one that
    does not (``bench.tree_off``): each measurement on a server started fresh for it (one at a
    time: the PostgreSQL server's connections are shared) and warmed up first."""
    rps: dict[str, list[float]] = defaultdict(list)
    stats: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with psycopg.connect(url, autocommit=True) as probe:
        for round_ in range(ROUNDS):
            for name in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                rate, measured = _commands(deployment, name, projector, keys, url, seconds, round_)
                rps[name].append(rate)
                stats[name].append(measured | {"events_outside_tree_after": _uncovered(probe)})
    ratios = [on / off for on, off in zip(rps["on"], rps["off"], strict=True)]
    if not all(s["events_outside_tree_after"] > 0 for s in stats["off"]):
        raise RuntimeError("the tree-off server's events were covered by the tree: it was not off")
    return Figure(
        "tree_commands_ratio",
        statistics.median(rps["on"]),
        "commands/s",
        "ratio >= 0.9",
        baseline=statistics.median(rps["off"]),
        extra={
            "round_ratios": [round(r, 3) for r in ratios],
            "median_round_ratio": round(statistics.median(ratios), 3),
            "tree_on": _summary(stats["on"]),
            "tree_off": _summary(stats["off"]),
            "rounds": {name: stats[name] for name in ("on", "off")},
            "notes": f"commands_per_s's load ({CLIENTS} wrk clients, own user and key each, "
            f"alternating PATCH /users/me and POST /api-keys) for {seconds:.0f}s against a "
            "`ledgerline serve` started fresh for each measurement (one at a time: PostgreSQL's "
            "connections are shared; 2 s of warm-up first) on the same database, configured as "
            "the one of commands_per_s. value: as shipped (the Merkle tree extended in "
            "each group's transaction); baseline: `python -m bench.tree_off serve`, whose recorder "
            "skips the tree (bench-only subclass, no production setting); "
            f"{ROUNDS} rounds alternating which goes first, value and baseline the medians; "
            "round_ratios: on/off within each round. events_outside_tree_after: events past the "
            "tree's last leaf after a measurement (> 0 after every off one: its appends really "
            "skipped the tree; the next tree-extending group makes them void leaves, which the "
            "on side pays once per round). Shared 2-core machine (other engineers' tests): "
            "compare the ratios, not absolute rates",
        },
    )


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(field: str) -> float:
        return round(statistics.median(r[field] for r in runs), 2)

    return {
        "rps": median("rps"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "server_cpu_ms_per_command": median("server_cpu_ms_per_command"),
        "server_cores": round(statistics.median(r["cpu_cores"]["server"] for r in runs), 2),
        "postgres_cores": round(statistics.median(r["cpu_cores"]["postgres"] for r in runs), 2),
    }


def _commands(
    deployment: Deployment,
    name: str,
    projector: Process,
    keys: list[str],
    url: str,
    seconds: float,
    round_: int,
) -> tuple[float, dict[str, Any]]:
    """One measurement of one side on a fresh server: its rps, and what explains it. Measured
    again (on another fresh server) when requests failed: one connection refused by the shared
    PostgreSQL server ("too many clients", other runs') opens the server's database breaker, and
    it answers 503 at once for a second or more."""
    for tries in range(1, 4):
        wait_for_connections(url, CLIENTS + 10)  # as commands_per_s: the server is shared
        if name == "on":
            server = deployment.serve("serve-tree")
        else:
            server = deployment.serve("serve-tree-off", module="bench.tree_off")
        try:
            workers = int(deployment.env.get("LEDGERLINE_WORKERS", "1"))
            expected = 0 if name == "on" else 1 if workers == 1 else workers + 1  # + the supervisor's
            built = server.log.read_text(errors="replace").count("bench.tree_off: ")
            if built != expected:
                raise RuntimeError(f"the tree-{name} server built {built} tree-off recorders")

            def load(duration: float, server: Process = server) -> Wrk:
                script = COMMANDS_LUA % {"keys": lua_strings(keys), "nonce": uuid.uuid4().hex[:8]}
                return Wrk(server.url, script, threads=CLIENTS, connections=CLIENTS, seconds=duration)

            load(2).run()  # warm-up: credential caches, connection pools
            with (
                CpuMeter(server=server.pid, projector=projector.pid) as cpu,
                DbSampler(url) as db,
                profiled(server, f"commands-tree-{name}-{round_}", seconds),
            ):
                result = load(seconds).run()
        finally:
            server.stop()
        try:
            result.check(f"commands, tree {name}")
            break
        except LoadError:
            if tries == 3:
                raise
    return result.rps, {
        **result.summary(),
        "cpu_cores": cpu.cores,
        "server_cpu_ms_per_command": round(
            cpu.cores["server"] * result.seconds / max(1, result.requests) * 1000, 2
        ),
        "db_active_sessions": db.average(),
        "tries": tries,
    }
