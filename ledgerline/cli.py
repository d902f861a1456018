"""The ``ledgerline`` command line."""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import sys
import threading

import click
import msgspec

from api.schemas import RegisterUser
from domain.audit import AuditContext, acting_as
from domain.errors import DomainError, UsernameTakenError
from domain.password_policy import PasswordPolicyError, check_password
from eventstore.personal_data import WrongSecretKeyError
from eventstore.schema import RuntimeRoleError
from ledgerline import __version__, logs
from ledgerline.audit_cli import audit
from ledgerline.bootstrap import Components, NotInitialisedError, build, build_app
from ledgerline.operator_cli import keys, users
from ledgerline.secret_files import read_secret_files
from ledgerline.settings import Settings, SettingsError, log_level
from ledgerline.witness import witness
from projections.registry import NAMES as PROJECTION_NAMES
from projections.runner import EventNotApplicableError

PROJECTOR_GC_THRESHOLDS = (10_000, 20, 50)  # the defaults are (700, 10, 10)
logger = logging.getLogger("ledgerline.cli")
CLI_ACTOR = AuditContext(actor_type="system", request_id="cli", user_agent="ledgerline-cli")
ADMIN_SCOPES = {"*": True}


def _settings() -> Settings:
    return Settings.from_env(os.environ)


@click.group()
@click.version_option(__version__, prog_name="ledgerline")
def cli() -> None:
    """Ledgerline: users and API keys whose audit log is the event stream."""


cli.add_command(audit)
cli.add_command(users)
cli.add_command(keys)
audit.add_command(witness)


def main() -> None:
    """Entry point: configuration problems are one clear line, not a traceback."""
    try:
        read_secret_files(os.environ)
        logs.configure(log_level(os.environ))
        cli()
    except (SettingsError, NotInitialisedError, WrongSecretKeyError, EventNotApplicableError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("init")
def db_init() -> None:
    """Create or upgrade the schema (idempotent; safe to run twice or concurrently)."""
    settings = _settings()
    try:
        components = build(settings, init=True)
    except RuntimeRoleError as error:
        raise click.ClickException(str(error)) from None
    try:
        finished = components.identity.finish_erasures()
    finally:
        components.close()
    if finished:
        click.echo(f"finished {finished} interrupted erasure(s)")
    click.echo(f"database ready: {settings.database.redacted()}")
    if settings.owner_database is not None:
        owner, runtime = settings.owner_database.role, settings.database.role
        click.echo(f"schema owned by {owner}; the runtime role {runtime} may read and append")


@cli.command("create-admin")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option(
    "--password",
    required=True,
    envvar="LEDGERLINE_ADMIN_PASSWORD",
    help="Or set LEDGERLINE_ADMIN_PASSWORD (safer: other users can read a command line).",
)
@click.option("--full-name", default=None)
@click.option(
    "--if-absent",
    is_flag=True,
    help="Exit 0 without a change when the username is taken (a bootstrap step run on every start).",
)
def create_admin(username: str, email: str, password: str, full_name: str | None, if_absent: bool) -> None:
    """Register a superuser and print a new admin API key as the last line."""
    try:
        request = msgspec.convert(
            {"username": username, "email": email, "password": password, "full_name": full_name},
            RegisterUser,
        )
        check_password(password, username=username, email=email, full_name=full_name)
    except (msgspec.ValidationError, PasswordPolicyError) as error:
        raise click.BadParameter(str(error)) from None
    components = build(_settings(), init=None)
    try:
        key = _register_admin(components, request)
    except UsernameTakenError as error:
        if not if_absent:
            raise click.ClickException(str(error)) from None
        click.echo(f"user {request.username} exists already: nothing created (--if-absent)")
        return
    except DomainError as error:
        raise click.ClickException(str(error)) from None
    finally:
        components.close()
    click.echo(f"created admin {request.username}; its API key (shown once) is on the next line")
    click.echo(key)


def _register_admin(components: Components, request: RegisterUser) -> str:
    with acting_as(CLI_ACTOR):
        identity = components.identity
        user = identity.register_user(
            username=request.username,
            email=request.email,
            password=request.password,
            full_name=request.full_name,
            is_superuser=True,
        )
        identity.verify_user(user.id)
        return identity.issue_api_key(user.id, name="admin (created by CLI)", permissions=ADMIN_SCOPES).key


@cli.command("project")
@click.option("--projection", "names", multiple=True, help="Run only these (repeatable); default: all.")
@click.option("--no-delivery", is_flag=True, help="Stream nothing out (a `--only-delivery` process does).")
@click.option(
    "--only-delivery",
    is_flag=True,
    help="Only stream the audit log out (webhooks, NATS): the deliverer in a process of its own.",
)
def project(names: tuple[str, ...], no_delivery: bool, only_delivery: bool) -> None:
    """Run projector workers and the deliverer: catch up, then follow the live stream until
    SIGTERM or Ctrl-C."""
    from ledgerline.streaming import start_deliverer
    from projections.worker import start_checkpointer, start_workers

    if only_delivery and (no_delivery or names):
        raise click.UsageError(
            "--only-delivery runs no projection: it takes neither --projection nor --no-delivery"
        )
    settings = _settings()
    components = build(settings)
    _collect_less()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        workers: list[threading.Thread] = []
        if not only_delivery:
            selected = components.selected_projections(names)
            # A log line, not a print: a long-running process's output is its JSON log.
            names_ = ", ".join(p.name for p in selected)
            logger.info("projecting %s from %s", names_, settings.database.redacted())
            workers += start_workers(
                selected, components.identity, components.engine, settings.database, stop
            )
            workers.append(start_checkpointer(components.checkpointer(), settings.database, stop))
        if not no_delivery:  # webhooks and NATS: one leader per sink, whichever process runs it
            logger.info("delivering subscriptions from %s", settings.database.redacted())
            workers.append(start_deliverer(components, stop))
        while not stop.wait(0.5):
            pass
        for worker in workers:
            worker.join(timeout=30)
    finally:
        components.close()


@cli.group()
def projections() -> None:
    """Operate the read models."""


@projections.command("status")
def projections_status() -> None:
    """Each projection's generation, position, head, lag and state (failing on an event, stalled,
    rebuilding, catching up, caught up), and the audit checkpoints' (audit_checkpoints: the
    checkpoint signer, not a read model: nothing to rebuild)."""
    from projections.read_side import chain_status, status

    settings = _settings()
    components = build(settings)
    stall = settings.ready_stall_seconds
    try:
        rows = [
            *status(components.engine, components.identity, stall_seconds=stall),
            chain_status(
                components.engine,
                components.identity,
                stall_seconds=stall,
                interval=settings.checkpoint_seconds,
            ),
        ]
    finally:
        components.close()
    width = max(12, *(len(row.name) + 1 for row in rows))  # "audit_checkpoints" is longer than 12
    click.echo(f"{'projection':<{width}}{'gen':>5}{'position':>12}{'head':>12}{'lag':>10}{'lag s':>9}  state")
    for row in rows:
        building = f" (generation {row.building} at {row.building_position})" if row.building else ""
        failure = row.failure
        failing = (
            f": cannot apply the event at position {failure.position} ({failure.error_type}"
            f"{', SQLSTATE ' + failure.sqlstate if failure.sqlstate else ''}), {failure.attempts} attempts"
            f" since {failure.first_failed_at:%Y-%m-%d %H:%M:%S} UTC"
            if failure
            else ""
        )
        click.echo(
            f"{row.name:<{width}}{row.generation:>5}{row.position:>12}{row.head:>12}{row.lag_events:>10}"
            f"{row.lag_seconds:>9.1f}  {row.state}{building}{failing}"
        )


@projections.command("rebuild")
@click.argument("name", type=click.Choice(PROJECTION_NAMES))
def projections_rebuild(name: str) -> None:
    """Blue-green rebuild of NAME: a new generation catches up while the live one serves.
    (audit_checkpoints, shown by status, is the checkpoint signer, not a read model.)"""
    from tqdm import tqdm

    from projections.rebuild import rebuild

    components = build(_settings())
    _collect_less()
    try:
        (projection,) = components.selected_projections((name,))
        with tqdm(total=components.identity.head_position(), unit="ev", desc=name) as bar:

            def progress(done: int, head: int) -> None:
                bar.total = head
                bar.update(done - bar.n)

            generation = rebuild(projection, components.identity, components.engine, progress=progress)
    finally:
        components.close()
    click.echo(f"{name}: generation {generation} is live")


@cli.command("serve")
@click.option("--host", default=None, help="Address to listen on (wins over LEDGERLINE_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (wins over LEDGERLINE_PORT).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="API processes, PostgreSQL only (wins over LEDGERLINE_WORKERS).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API (on SQLite, creating the schema and a first admin on an empty store)."""
    import uvicorn

    from ledgerline.asgi import prepare_metrics
    from ledgerline.streaming import start_deliverer
    from projections.worker import start_checkpointer, start_workers

    # The flags become the environment: the worker processes read their settings from it.
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"LEDGERLINE_{name}"] = str(value)
    settings = _settings()
    logs.configure(settings.log_level, access=settings.access_log)
    if settings.workers > 1 and settings.database.is_sqlite:
        raise SettingsError(
            "LEDGERLINE_WORKERS > 1 needs PostgreSQL (the embedded store runs in one process)"
        )
    prepare_metrics(settings)  # before anything imports prometheus-client
    components = build(settings, init=settings.database.is_sqlite)
    stop = threading.Event()
    try:
        components.identity.finish_erasures()
        if settings.database.is_sqlite:
            if components.identity.head_position() == 0:
                _first_start(components, settings)  # on PostgreSQL operators run create-admin
            _rebuild_outdated(components)
            # The embedded store has no separate projector: run it in this process.
            start_workers(components.selected_projections(), components.identity, components.engine,
                          settings.database, stop)  # fmt: skip
            start_checkpointer(components.checkpointer(), settings.database, stop)
            start_deliverer(components, stop)
        if settings.workers == 1:
            uvicorn.run(
                build_app(components),
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                proxy_headers=False,  # addresses from the peer; api.context trusts LEDGERLINE_TRUSTED_PROXIES
            )
            return
    finally:
        stop.set()
        components.close()
    from ledgerline.asgi import run_workers

    run_workers(settings)  # several processes (PostgreSQL), each with its own components


def _collect_less() -> None:
    """A projecting process makes a few dicts per event and keeps almost none: the collector's
    default (a pass every 700 new objects, walking what startup made too) took a quarter of a
    rebuild's time. Startup's objects are set aside for good, and passes come less often."""
    gc.freeze()
    gc.set_threshold(*PROJECTOR_GC_THRESHOLDS)


def _rebuild_outdated(components: Components) -> None:
    """Embedded store: a read model whose tables an upgrade changed is rebuilt before serving
    (on PostgreSQL, operators run `projections rebuild`, blue-green, while the old one serves)."""
    from projections.catalog import live_generation
    from projections.rebuild import rebuild

    for projection in components.selected_projections():
        with components.engine.connect() as conn:
            shape = live_generation(conn, projection.name)[1]
        if shape != projection.shape:
            logger.info("rebuilding %s (its tables changed in this version)", projection.name)
            rebuild(projection, components.identity, components.engine)


def _first_start(components: Components, settings: Settings) -> None:
    password = secrets.token_urlsafe(12) + "aA1!"
    request = RegisterUser(username="admin", email="admin@ledgerline.invalid", password=password)
    key = _register_admin(components, request)
    base = f"http://{settings.host}:{settings.port}"
    click.echo(
        "\nFirst start: created the superuser 'admin' (shown once, keep them safe)\n"
        f"  password: {password}\n"
        f"  API key:  {key}\n"
        f"Try: curl -H 'X-API-Key: {key}' {base}/api/v1/users/me\n"
        f"Every route is described at {base}/schema/swagger\n"
    )
    sys.stdout.flush()
