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


# The evidence: appended, read, never rewritten by the runtime role.
EVIDENCE_TABLES = ("identity_events", "identity_snapshots", "audit_tree_nodes", "audit_tree_checkpoints")
# Only the library's recorder writes here; its ``LOCK TABLE ... IN EXCLUSIVE MODE`` (which orders
# positions) needs UPDATE, DELETE or TRUNCATE privilege: UPDATE is granted, and the table's
# append-only trigger, which the runtime role can neither drop nor disable, refuses every UPDATE.
LOCKED_EVIDENCE_TABLE = "identity_events"
# Bookkeeping the runtime role changes in place (erasure destroys a wrapped key: an UPDATE).
NO_DELETE_TABLES = {"data_keys": "SELECT, INSERT, UPDATE", "alembic_version": "SELECT"}


class RuntimeRoleError(RuntimeError):
    pass


def grant_runtime_role(connection: Connection, role: str) -> None:
    """PostgreSQL, run as the schema's owner (under ``init_lock``, after ``init_schema``): the
    runtime role reads and appends evidence and keeps the caches; it owns no evidence table,
    holds no TRUNCATE or TRIGGER right on one, and is not a superuser. Idempotent: every table
    the owner owns is reset to exactly these grants. Read-model generations are created by the
    runtime role itself (a rebuild creates and drops them), so it owns those: they are caches."""
    row = connection.execute(
        text(
            "SELECT r.rolsuper, pg_has_role(r.oid, current_user, 'MEMBER') AS is_owner"
            " FROM pg_roles r WHERE r.rolname = :role"
        ),
        {"role": role},
    ).first()
    if row is None:
        raise RuntimeRoleError(f"the runtime role {role!r} does not exist: create it (LOGIN, nothing else)")
    if row.rolsuper or row.is_owner:
        raise RuntimeRoleError(
            f"the runtime role {role!r} is a superuser or a member of the owner: it could rewrite evidence"
        )
    quote = connection.dialect.identifier_preparer.quote
    grantee = quote(role)
    statements = [f"GRANT USAGE, CREATE ON SCHEMA public TO {grantee}"]
    for table in _owned(connection, "SELECT tablename FROM pg_tables WHERE tableowner = current_user"):
        statements.append(f"REVOKE ALL ON TABLE {quote(table)} FROM {grantee}")
        statements.append(f"GRANT {_table_rights(table)} ON TABLE {quote(table)} TO {grantee}")
    for sequence in _owned(
        connection, "SELECT sequencename FROM pg_sequences WHERE sequenceowner = current_user"
    ):  # nextval for the tables it appends to; not setval (that needs UPDATE)
        statements.append(f"REVOKE ALL ON SEQUENCE {quote(sequence)} FROM {grantee}")
        statements.append(f"GRANT USAGE ON SEQUENCE {quote(sequence)} TO {grantee}")
    for statement in statements:
        connection.exec_driver_sql(statement)
    connection.commit()


def hand_over_caches(connection: Connection, role: str, relations: list[str]) -> None:
    """Make the runtime role the owner of the read models' tables and views the owner still
    owns (made before the roles were split): a rebuild drops and re-creates them. The owner
    must be able to act as that role (a superuser, or ``GRANT <runtime> TO <owner>``)."""
    quote = connection.dialect.identifier_preparer.quote
    owned = connection.execute(
        text(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname = ANY(:names) AND c.relkind IN ('r', 'v')"
            " AND pg_get_userbyid(c.relowner) = current_user"
        ),
        {"names": relations},
    ).all()
    if owned and not connection.execute(text("SELECT pg_has_role(:role, 'MEMBER')"), {"role": role}).scalar():
        raise RuntimeRoleError(
            f"the read models were made by the owner; to hand them to {role!r} the owner must be "
            f"a member of it (GRANT {quote(role)} TO <owner>) or a superuser"
        )
    for name, kind in owned:
        what = "VIEW" if kind == "v" else "TABLE"
        connection.exec_driver_sql(f"ALTER {what} {quote(name)} OWNER TO {quote(role)}")
    connection.commit()


def _owned(connection: Connection, query: str) -> list[str]:
    return list(connection.execute(text(f"{query} AND schemaname = 'public'")).scalars())


def _table_rights(table: str) -> str:
    if table == LOCKED_EVIDENCE_TABLE:
        return "SELECT, INSERT, UPDATE"
    if table in EVIDENCE_TABLES:
        return "SELECT, INSERT"
    return NO_DELETE_TABLES.get(table, "SELECT, INSERT, UPDATE, DELETE")


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
