"""Snapshots are caches, never evidence. Someone who can write to the database (the owner here:
they put the append-only triggers out of the way in their own transaction) turns a regular user's
``"is_superuser":false`` into ``true`` in her snapshot, or moves another user's genuine snapshot
onto her. After a restart she is still a regular user (her events say so), a log line names the
rejected snapshot, and ``ledgerline audit verify`` reports it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from eventstore.database import writing
from eventstore.passwords import Passwords
from eventstore.snapshots import MAC_SIZE, MAGIC
from eventstore.snapshots import _stored_snapshots as stored_snapshots
from ledgerline.bootstrap import Components, build, build_app
from tests.conftest import settings_for
from tests.integration.helpers import register, user_context
from tests.integration.test_cli import run

SNAPSHOT_LOGGER = "eventstore.snapshots"


@pytest.fixture
def alice_and_root(components: Components) -> Iterator[tuple[Components, UUID, UUID]]:
    """A regular user and a superuser, each with a snapshot (55 changes: interval 50)."""
    identity = components.identity
    alice, root = register(identity, "alice"), register(identity, "root", is_superuser=True)
    for user in (alice, root):
        with user_context(user.id):
            for n in range(55):
                identity.update_user(user.id, full_name=f"Name {n}")
    yield components, alice.id, root.id


def snapshot_rows(components: Components, user_id: UUID) -> list[sa.Row]:  # type: ignore[type-arg]
    table = components.settings.database.snapshots_table
    with components.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT originator_id, originator_version, state FROM {table}"))
        return [row for row in rows if UUID(str(row.originator_id)) == user_id]


def as_the_owner(components: Components, *statements: tuple[str, dict[str, object]]) -> None:
    """Writes to the snapshots table with its append-only triggers off, in this transaction."""
    database = components.settings.database
    table = database.snapshots_table
    with writing(components.engine) as conn:
        if database.is_sqlite:
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
        else:
            conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
        for statement, params in statements:
            conn.execute(sa.text(statement.format(table=table)), params)
        if not database.is_sqlite:
            conn.execute(sa.text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))


def stored_id(components: Components, user_id: UUID) -> object:
    return user_id.hex if components.settings.database.is_sqlite else user_id


def forge_superuser_flag(components: Components, user_id: UUID) -> int:
    (row,) = snapshot_rows(components, user_id)
    state = bytes(row.state)
    assert state.count(b'"is_superuser":false') == 1
    as_the_owner(
        components,
        (
            "UPDATE {table} SET state = :state WHERE originator_id = :id AND originator_version = :v",
            {
                "state": state.replace(b'"is_superuser":false', b'"is_superuser":true'),
                "id": stored_id(components, user_id),
                "v": row.originator_version,
            },
        ),
    )
    return int(row.originator_version)


def move_snapshot(components: Components, from_id: UUID, to_id: UUID) -> int:
    """The superuser's genuine snapshot, inserted as the regular user's at a later version."""
    (row,) = snapshot_rows(components, from_id)
    (own,) = snapshot_rows(components, to_id)
    version = int(own.originator_version) + 1
    topic_of = "SELECT topic FROM {table} WHERE originator_id = :id"
    with components.engine.connect() as conn:
        topic = conn.execute(
            sa.text(topic_of.format(table=components.settings.database.snapshots_table)),
            {"id": stored_id(components, from_id)},
        ).scalar_one()
    as_the_owner(
        components,
        (
            "INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES (:id, :v, :t, :s)",
            {"id": stored_id(components, to_id), "v": version, "t": topic, "s": bytes(row.state)},
        ),
    )
    return version


def restarted(components: Components, tmp_path: Path, passwords: Passwords) -> Components:
    components.close()
    return build(settings_for(components.settings.database.url, tmp_path), passwords=passwords)


def verify(components: Components, tmp_path: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = run(components.settings.database.url, tmp_path, "audit", "verify")
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("forgery", ["flag flipped", "superuser's snapshot moved onto her"])
def test_a_forged_snapshot_grants_nothing_is_logged_and_verify_reports_it(
    alice_and_root: tuple[Components, UUID, UUID],
    tmp_path: Path,
    fast_passwords: Passwords,
    caplog: pytest.LogCaptureFixture,
    forgery: str,
) -> None:
    components, alice, root = alice_and_root
    with user_context(alice):
        key = components.identity.issue_api_key(alice, name="laptop", permissions={"users:read": True}).key
    if forgery == "flag flipped":
        version = forge_superuser_flag(components, alice)
    else:
        version = move_snapshot(components, root, alice)
    components = restarted(components, tmp_path, fast_passwords)
    try:
        with caplog.at_level(logging.WARNING, logger=SNAPSHOT_LOGGER):
            user = components.identity.get_user(alice)
        assert user.is_superuser is False and user.username == "alice"
        assert user.version == 56  # every event replayed, none skipped past
        rejected = [r.getMessage() for r in caplog.records if r.name == SNAPSHOT_LOGGER]
        assert any(str(alice) in line and f"version {version}" in line for line in rejected), rejected
        assert not any("alice" in line or "Name" in line for line in rejected)  # no personal data
        if forgery != "flag flipped":  # the forged newer one hides not her genuine older snapshot
            nearest = list(components.identity.snapshots.get(alice, desc=True, limit=1))  # type: ignore[union-attr]
            assert [s.originator_version for s in nearest] == [version - 1]
        with TestClient(app=build_app(components, watch_credentials=False)) as client:
            listed = client.get("/api/v1/users", headers={"X-API-Key": key})
        assert listed.status_code == 403, listed.text

        code, report = verify(components, tmp_path)
        assert code == 1 and report["ok"] is False
        assert [(f["aggregate_id"], f["version"]) for f in report["forged_snapshots"]] == [
            (str(alice), version)
        ]
        assert "alice" not in json.dumps(report["forged_snapshots"])
    finally:
        components.close()


def test_genuine_snapshots_are_used_and_verify(
    alice_and_root: tuple[Components, UUID, UUID], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    components, alice, _ = alice_and_root
    (row,) = snapshot_rows(components, alice)
    assert bytes(row.state).startswith(MAGIC)
    with caplog.at_level(logging.WARNING, logger=SNAPSHOT_LOGGER):
        assert components.identity.get_user(alice).version == 56
    assert not [r for r in caplog.records if r.name == SNAPSHOT_LOGGER]
    code, report = verify(components, tmp_path)
    assert code == 0 and report["ok"] is True
    assert report["snapshots_verified"] == 2 and report["forged_snapshots"] == []
    paged = list(stored_snapshots(components.engine, components.settings.database, batch=1))
    assert sorted((s.originator_id, s.originator_version) for s in paged) == [
        (s.originator_id, s.originator_version) for s in paged
    ] and len(paged) == 2  # fmt: skip


def test_a_snapshot_written_before_macs_is_replayed_past_and_not_called_forged(
    alice_and_root: tuple[Components, UUID, UUID], tmp_path: Path, fast_passwords: Passwords
) -> None:
    components, alice, _ = alice_and_root
    (row,) = snapshot_rows(components, alice)
    as_the_owner(
        components,
        (
            "UPDATE {table} SET state = :state WHERE originator_id = :id",
            {"state": bytes(row.state)[len(MAGIC) + MAC_SIZE :], "id": stored_id(components, alice)},
        ),
    )
    components = restarted(components, tmp_path, fast_passwords)
    try:
        assert components.identity.get_user(alice).version == 56
        code, report = verify(components, tmp_path)
        assert code == 0 and report["forged_snapshots"] == [] and report["unauthenticated_snapshots"] == 1
    finally:
        components.close()
