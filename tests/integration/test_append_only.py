"""The database itself refuses to change or remove stored events, snapshots, the log's tree nodes
and its checkpoints (for the table owner too, as long as the triggers stand)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from eventstore.audit_chain.checkpoints import checkpoint_now
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from tests.conftest import settings_for
from tests.integration.helpers import register

TREE_STATEMENTS = {
    "audit_tree_nodes": ["UPDATE {table} SET hash = hash", "DELETE FROM {table} WHERE level = 0"],
    "audit_tree_checkpoints": ["UPDATE {table} SET note = note", "DELETE FROM {table}"],
}


def stored(components: Components) -> Components:
    identity = components.identity
    alice = register(identity, "alice")
    identity.take_snapshot(alice.id)
    checkpoint_now(components.engine, components.checkpoint_keys)
    return components


def refused(components: Components, table: str, statement: str) -> None:
    with components.engine.connect() as conn:
        before = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        assert before >= 1
        with pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(statement.format(table=table)))
        conn.rollback()
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET topic = 'forged'",
        "UPDATE {table} SET state = state WHERE originator_version = 1",
        "DELETE FROM {table}",
        "DELETE FROM {table} WHERE originator_version = 1",
    ],
)
@pytest.mark.parametrize("which", ["events", "snapshots"])
def test_update_and_delete_fail_at_the_database(components: Components, statement: str, which: str) -> None:
    database = components.settings.database
    table = database.events_table if which == "events" else database.snapshots_table
    refused(stored(components), table, statement)


@pytest.mark.parametrize(
    ("table", "statement"), [(table, s) for table, statements in TREE_STATEMENTS.items() for s in statements]
)
def test_the_tree_and_its_checkpoints_cannot_be_rewritten(
    components: Components, table: str, statement: str
) -> None:
    refused(stored(components), table, statement)


@pytest.mark.parametrize("table", ["identity_events", "audit_tree_nodes", "audit_tree_checkpoints"])
def test_truncate_fails_on_postgres(
    pg_database: str, tmp_path: Path, table: str, fast_passwords: Passwords
) -> None:
    built = build(settings_for(pg_database, tmp_path), init=True, passwords=fast_passwords)
    try:
        stored(built)
        with built.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(f"TRUNCATE {table}"))
    finally:
        built.close()
