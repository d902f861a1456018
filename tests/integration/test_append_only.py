"""The database itself refuses to change or remove stored events and snapshots."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ledgerline.bootstrap import Components
from tests.integration.helpers import register


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
    identity = components.identity
    alice = register(identity, "alice")
    identity.take_snapshot(alice.id)
    database = components.settings.database
    table = database.events_table if which == "events" else database.snapshots_table
    with components.engine.connect() as conn:
        before = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        assert before >= 1
        with pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(statement.format(table=table)))
        conn.rollback()
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == before


def test_truncate_fails_on_postgres(pg_database: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ledgerline.bootstrap import build
    from tests.conftest import settings_for

    built = build(settings_for(pg_database, tmp_path), init=True)
    try:
        with built.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text("TRUNCATE identity_events"))
    finally:
        built.close()
