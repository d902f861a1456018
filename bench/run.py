"""Every figure of issues 6 and 11 in one run, on one scratch PostgreSQL database, side by side with its
baseline. `make bench` (full scale) or `make bench-quick`; ``--only`` runs some figures.

Order: `db init` and `create-admin` (the CLI, as an operator runs them); a bulk log, its Merkle
tree backfilled, rebuilt into the projections and verified; then `ledgerline project` and two
`ledgerline serve` processes for the HTTP figures; last, the tree's cost to commands (fresh
`serve` processes in turn, half of them not extending the tree: nothing after it may rely on the
tree). Every process is stopped and the database dropped, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import psycopg

from bench import audit_tree, bulk, live, login, reads, rebuild, writes
from bench.harness import (
    Deployment,
    Figure,
    Scale,
    free_port,
    scratch_database,
    table,
    wait_for_connections,
    write_results,
)
from bench.measure import LoadError
from domain.audit import AuditContext, acting_as
from ledgerline.bootstrap import Components, build
from ledgerline.settings import Settings
from projections.read_side import wait_for_position

FIGURES = (
    "backfill", "rebuild", "verify", "audit", "proofs", "commands", "auth", "framework", "as_of",
    "revocation", "login", "live", "tree",
)  # fmt: skip
BULK_LOG = {"backfill", "rebuild", "verify", "audit", "proofs"}  # the figures of the bulk-written log
PASSWORD = "Bench-pass-1!"
STARTED = time.monotonic()
T = TypeVar("T")
CONNECTIONS_NEEDED = 50  # a serve under load, the projector, the bench itself (of the server's 100)


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller scale (under 3 minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(FIGURES)}")
    args = parser.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else set(FIGURES)
    if wanted - set(FIGURES):
        parser.error(f"unknown figures {sorted(wanted - set(FIGURES))}")
    scale = Scale.of("quick" if args.quick else "full")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop processes, drop the db
    with scratch_database() as url, tempfile.TemporaryDirectory(prefix="ledgerline-bench-") as work:
        say(f"{scale.name} scale, scratch database {url.rsplit('/', 1)[1]}")
        # One API process per core, as an operator would run it on this machine.
        deployment = Deployment(url, Path(work), login_rate_limit="0", workers=str(os.cpu_count() or 1))
        try:
            figures = run(deployment, url, scale, wanted)
        except Exception:  # not on Ctrl-C or SIGTERM: then the processes' logs tell nothing
            for process in deployment.processes:
                print(f"--- last lines of {process.name} ---\n{process.tail()}", file=sys.stderr)
            raise
        finally:
            deployment.stop_all()
    figures.sort(key=lambda f: list(FIGURES).index(_figure_of(f)))
    print(f"\nLedgerline benchmarks, {scale.name} scale, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{time.monotonic() - STARTED:.0f}s\n")  # fmt: skip
    print(table(figures))
    written = write_results(figures, scale, every_figure=wanted == set(FIGURES))
    print(f"\nwritten to {written}")


def _figure_of(figure: Figure) -> str:
    names = {
        "tree_backfill_events_per_s": "backfill",
        "rebuild_events_per_s": "rebuild",
        "verify_since_events_per_s": "verify",
        "inclusion_proof_p99_ms": "proofs",
        "consistency_proof_p99_ms": "proofs",
        "tree_commands_ratio": "tree",
        "audit_query_p99_ms": "audit",
        "commands_per_s": "commands",
        "auth_overhead_ratio": "auth",
        "framework_ratio": "framework",
        "as_of_ms": "as_of",
        "revocation_visible_s": "revocation",
        "login_ratio": "login",
        "live_lag_p99_ms": "live",
    }
    return names[figure.key]


def run(deployment: Deployment, url: str, scale: Scale, wanted: set[str]) -> list[Figure]:
    figures: list[Figure] = []
    say("ledgerline db init, create-admin")
    deployment.run("db", "init")
    admin_key = deployment.run(
        "create-admin", "--username", "benchadmin", "--email", "benchadmin@example.com",
        env={"LEDGERLINE_ADMIN_PASSWORD": PASSWORD},
    ).strip().splitlines()[-1]  # fmt: skip
    components = build(Settings.from_env(deployment.settings))
    try:
        log, head = None, 0
        if wanted & BULK_LOG:
            say(f"writing {scale.events:,} events in bulk (domain + mapper + COPY), then their tree")
            log = bulk.write_log(deployment.settings, url, scale.events)
            head = components.identity.head_position()
            figures.append(audit_tree.backfill_figure(log))  # measured whenever the log is written
            say(f"wrote {log.events:,} events in {log.seconds:.0f}s, backfilled the tree in "
                f"{log.tree_seconds:.0f}s; baseline COPY, then rebuilds")  # fmt: skip
            figure = rebuild.measure(components, deployment, url, head)
            say(f"rebuilt: {figure.extra['by_projection']} events/s")
            if "rebuild" in wanted:
                figures.append(figure)
            if "verify" in wanted:
                say("verify_log since an early checkpoint")
                figures.append(audit_tree.verify_since(components))
                say(f"verified at {figures[-1].value:,.0f} events/s")
        if wanted - {"backfill", "rebuild", "verify"}:
            figures += http_figures(deployment, components, admin_key, scale, wanted, log, head)
    finally:
        components.close()
    return figures


def attempt(url: str, measure: Callable[[], T]) -> T:
    """Measure; once more if requests failed or a connection was refused (the PostgreSQL server
    is shared, and other runs may hold most of its connections for a while)."""
    try:
        return measure()
    except (LoadError, psycopg.OperationalError) as error:
        say(f"measuring again after: {error}")
        wait_for_connections(url, CONNECTIONS_NEEDED)
        return measure()


def http_figures(
    deployment: Deployment,
    components: Components,
    admin_key: str,
    scale: Scale,
    wanted: set[str],
    log: bulk.BulkLog | None,
    head: int,
) -> list[Figure]:
    url = deployment.env["LEDGERLINE_DATABASE_URL"]
    figures = []
    identity = components.identity
    wait_for_connections(url, CONNECTIONS_NEEDED)
    projector = deployment.start("project", "project")
    first = deployment.start("serve-a", "serve", port=free_port())
    projector.wait_log("projecting")
    first.wait_ready()
    if not wait_for_position(components.engine, identity.head_position(), timeout=600):
        raise RuntimeError("the projector did not catch up within 600 s")
    waited = projector.wait_idle()  # whatever else it does at start (its first checkpoint)
    say(f"started: {', '.join(p.name for p in deployment.processes)}; projector idle after {waited:.0f}s")
    if "audit" in wanted and log is not None:
        say("audit queries")
        figures.append(
            attempt(url, lambda: reads.audit_query(first, admin_key, url, log, head, scale.seconds))
        )
    if "proofs" in wanted:
        say("inclusion and consistency proofs")
        figures += attempt(url, lambda: audit_tree.proofs(first, admin_key, components, scale))
    clients = bulk.users_with_keys(identity, "client", writes.CLIENTS, PASSWORD)
    keys = [key for _, key in clients]
    if "commands" in wanted:
        say(f"commands: raw INSERT + COMMIT baseline, then over HTTP ({scale.seconds:.0f}s each)")
        figures.append(attempt(url, lambda: writes.measure(first, projector, keys, url, scale.seconds)))
    if "auth" in wanted:
        projector.wait_idle()  # done with what the figures before wrote: it would share the cores
        say("auth overhead: /health, then /users/me")
        figures.append(attempt(url, lambda: reads.auth_overhead(first, keys, scale.seconds)))
    by_key = {figure.key: figure for figure in figures}
    if "commands_per_s" in by_key and "auth_overhead_ratio" in by_key:  # the CPU bar: <= 2x
        commands, auth = by_key["commands_per_s"], by_key["auth_overhead_ratio"]
        per_command = 1000 * commands.extra["cpu_cores"]["server"] / commands.value
        per_health = auth.extra["cpu_ms_per_request"]["health"]
        commands.extra["cpu_ms_per_command"] = round(per_command, 3)
        commands.extra["cpu_per_command_vs_health"] = round(per_command / per_health, 1)
    if "framework" in wanted:
        projector.wait_idle()
        say("framework: a bare Litestar app, then /users/me with the access log on and off")
        bare = deployment.start("bare", port=free_port(), module="bench.bare")
        quiet = deployment.serve("serve-quiet", env={"LEDGERLINE_ACCESS_LOG": "false"})
        try:
            bare.wait_ready()
            figures.append(attempt(url, lambda: reads.framework(first, quiet, bare, keys, scale.seconds)))
        finally:
            bare.stop()
            quiet.stop()
    if "as_of" in wanted:
        with acting_as(AuditContext(actor_type="system", request_id="bench-setup")):
            user_id = identity.register_user(username="history", email="history@example.com",
                                             password=PASSWORD).id  # fmt: skip
        begun = datetime.now(UTC)
        spent = bulk.write_history(identity, user_id, scale.history)
        say(f"as of: wrote {scale.history:,} events to one user in {spent:.1f}s; querying")
        span, versions = (begun, datetime.now(UTC)), scale.history + 1
        figures.append(
            attempt(url, lambda: reads.as_of(first, admin_key, user_id, versions, span, scale.seconds))
        )
    if "revocation" in wanted:
        say("revocation across two processes")
        second = deployment.serve("serve-b")
        figures.append(attempt(url, lambda: reads.revocation(first, second, admin_key, scale.revocations)))
        second.stop()  # its pooled connections are not needed any more
    if "login" in wanted:
        projector.wait_idle()
        say("logins: Argon2 baseline, idle GET probe, then logins with the probe")
        users = [f"client{n}" for n in range(login.CLIENTS)]
        settings = Settings.from_env(deployment.settings)
        cores = settings.hashing_cores

        def logins() -> Figure:
            return login.measure(first, users, PASSWORD, keys[0], settings.argon2, cores, scale.seconds)

        figures.append(attempt(url, logins))
    if "live" in wanted:
        say(f"live lag: writing at {live.RATE} events/s for {scale.lag_seconds:.0f}s")
        writers = [writer for writer, _ in clients]
        figures.append(live.measure(projector, url, deployment.settings, writers, scale.lag_seconds))
    if "tree" in wanted:  # last: the tree-off server's events are outside the tree
        first.stop()  # its connections: fresh servers start, one at a time
        say(f"commands with and without the tree: {audit_tree.ROUNDS} rounds of {scale.seconds:.0f}s each")
        figures.append(
            attempt(url, lambda: audit_tree.commands_ratio(deployment, projector, keys, url, scale.seconds))
        )
    return figures
