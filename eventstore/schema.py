"""``db init``: create the library's event tables, then apply our versioned migrations.

Idempotent and safe to run from several processes at once: on PostgreSQL the whole run holds
an advisory lock, so concurrent initialisers wait instead of racing to create tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from eventsourcing.application import Application
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from eventstore.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
INIT_LOCK_KEY = 7_406_221_531  # arbitrary, fixed: "ledgerline db init"


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@contextmanager
def init_lock(engine: Engine) -> Iterator[Connection]:
    """Serialise initialisers (PostgreSQL advisory lock); everything ``db init`` creates is
    created while this is held."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": INIT_LOCK_KEY})
            connection.commit()
        try:
            yield connection
        finally:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": INIT_LOCK_KEY})
                connection.commit()


def init_schema(database: Database, connection: Connection) -> str:
    """Create or upgrade the event store's schema (call it under ``init_lock``); returns the
    schema revision now in place."""
    # The library creates its own tables (IF NOT EXISTS); one store is enough for that.
    _EventTables(env=_table_creating_env(database)).close()
    command.upgrade(_alembic_config(connection), "head")
    connection.commit()
    return current_revision(connection) or ""


def _table_creating_env(database: Database) -> dict[str, str]:
    env = database.eventsourcing_env(create_table=True, pool_size=1)
    env["IS_SNAPSHOTTING_ENABLED"] = "y"
    return env


class _EventTables(Application):
    """Named like ``Identity`` so the library names its tables the same (``identity_events``)."""

    name = "Identity"


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head() or ""


def is_initialised(engine: Engine) -> bool:
    with engine.connect() as connection:
        return current_revision(connection) == head_revision()
