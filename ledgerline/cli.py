"""The ``ledgerline`` command line."""

from __future__ import annotations

import os
import secrets
import sys

import click
import msgspec

from api.schemas import RegisterUser
from domain.audit import AuditContext, acting_as
from domain.errors import DomainError
from ledgerline import __version__
from ledgerline.bootstrap import Components, NotInitialisedError, build
from ledgerline.settings import Settings, SettingsError

CLI_ACTOR = AuditContext(actor_type="system", request_id="cli", user_agent="ledgerline-cli")
ADMIN_SCOPES = {"*": True}


def _settings() -> Settings:
    return Settings.from_env(os.environ)


@click.group()
@click.version_option(__version__, prog_name="ledgerline")
def cli() -> None:
    """Ledgerline: users and API keys whose audit log is the event stream."""


def main() -> None:
    """Entry point: configuration problems are one clear line, not a traceback."""
    try:
        cli()
    except (SettingsError, NotInitialisedError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("init")
def db_init() -> None:
    """Create or upgrade the schema (idempotent; safe to run twice or concurrently)."""
    settings = _settings()
    components = build(settings, init=True)
    try:
        finished = components.identity.finish_erasures()
    finally:
        components.close()
    if finished:
        click.echo(f"finished {finished} interrupted erasure(s)")
    click.echo(f"database ready: {settings.database.redacted()}")


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
def create_admin(username: str, email: str, password: str, full_name: str | None) -> None:
    """Register a superuser and print a new admin API key as the last line."""
    try:
        request = msgspec.convert(
            {"username": username, "email": email, "password": password, "full_name": full_name},
            RegisterUser,
        )
    except msgspec.ValidationError as error:
        raise click.BadParameter(str(error)) from None
    components = build(_settings(), init=True)
    try:
        key = _register_admin(components, request)
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


@cli.command("serve")
def serve() -> None:
    """Serve the API (on SQLite, creating the schema and a first admin on an empty store)."""
    import uvicorn

    from api.app import create_app

    settings = _settings()
    components = build(settings, init=settings.database.is_sqlite)
    try:
        components.identity.finish_erasures()
        if settings.database.is_sqlite and components.identity.head_position() == 0:
            _first_start(components, settings)  # on PostgreSQL operators run create-admin
    finally:
        components.close()
    uvicorn.run(create_app(version=__version__), host=settings.host, port=settings.port, log_level="info")


def _first_start(components: Components, settings: Settings) -> None:
    password = secrets.token_urlsafe(12) + "aA1!"
    request = RegisterUser(username="admin", email="admin@ledgerline.invalid", password=password)
    key = _register_admin(components, request)
    base = f"http://{settings.host}:{settings.port}"
    click.echo(
        "\nFirst start: created the superuser 'admin' (shown once, keep them safe)\n"
        f"  password: {password}\n"
        f"  API key:  {key}\n"
        f"Send the key as 'X-API-Key: <key>'. Try: curl {base}/health\n"
        f"The routes served so far are listed at {base}/schema/swagger\n"
    )
    sys.stdout.flush()
