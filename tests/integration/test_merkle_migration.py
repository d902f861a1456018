"""Migration 0005 on a store that already holds events (written before the tree existed, by the
library's own recorders at schema revision 0004): the tree covers every one of them, gaps
included, ``verify`` is ok, and appends after the upgrade extend the same tree."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from alembic import command
from eventsourcing.persistence import IntegrityError, StoredEvent

from eventstore.identity import Identity
from eventstore.passwords import Passwords
from eventstore.personal_data import DataKeyStore
from eventstore.schema import _alembic_config, _EventTables, _table_creating_env, current_revision, init_lock
from ledgerline.bootstrap import build
from tests.conftest import TEST_SECRET, settings_for
from tests.integration.helpers import register, table_names
from tests.integration.merkle_attacks import (
    positions,
    reference_leaves,
    reference_root,
    sign,
    tree_size,
    verify,
)


def at_revision_0004_with_events(url: str, tmp_path: Path, passwords: Passwords) -> None:
    """The schema as release 0004 left it, and events appended through the library's recorders
    (no tree), one save refused on PostgreSQL so that its positions are skipped."""
    settings = settings_for(url, tmp_path)
    database = settings.database
    engine = database.create_engine()
    try:
        with init_lock(engine) as connection:
            _EventTables(env=_table_creating_env(database)).close()
            command.upgrade(_alembic_config(connection), "0004")
            connection.commit()
            assert current_revision(connection) == "0004"
        assert "audit_tree_nodes" not in table_names(engine)
        env = database.eventsourcing_env(create_table=False, pool_size=2)
        env.pop("APPLICATION_RECORDER_TOPIC")  # the library's recorder, as before the tree
        secret = bytes.fromhex(TEST_SECRET)
        identity = Identity(
            env=env, data_keys=DataKeyStore(engine, secret), secret=secret, passwords=passwords
        )
        try:
            for name in ("alice", "bob", "carol"):
                user = register(identity, name)
                identity.update_user(user.id, full_name=f"{name} Changed")
            if database.is_postgres:
                taken = uuid4()
                identity.recorder.insert_events([_probe(taken)])
                with pytest.raises(IntegrityError):
                    identity.recorder.insert_events([_probe(uuid4()), _probe(taken)])
            register(identity, "dave")
        finally:
            identity.close()
    finally:
        engine.dispose()


def _probe(originator_id: UUID) -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id, originator_version=1, topic="tests.migration:Probe", state=b"{}"
    )


def test_the_tree_covers_the_events_stored_before_it(
    database_url: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    at_revision_0004_with_events(database_url, tmp_path, fast_passwords)
    upgraded = build(settings_for(database_url, tmp_path), init=True, passwords=fast_passwords)
    try:
        stored = positions(upgraded)
        if upgraded.settings.database.is_postgres:
            assert len(stored) < stored[-1]  # the refused save's positions are gaps: void leaves
        assert tree_size(upgraded) == stored[-1]
        assert {"audit_seals", "audit_checkpoints"}.isdisjoint(table_names(upgraded.engine))
        report = verify(upgraded)
        assert report.ok and report.events_verified == len(stored), report
        assert report.head_hash == reference_root(reference_leaves(upgraded)).hex()
        before = sign(upgraded)
        register(upgraded.identity, "erin")  # appends after the upgrade extend the same tree
        assert tree_size(upgraded) == positions(upgraded)[-1] > before.size
        report = verify(upgraded, since=upgraded.checkpoint_keys.open(before.note))
        assert report.ok and report.checkpoints_verified == 1, report
        with upgraded.engine.connect() as conn:
            assert conn.execute(
                sa.text("SELECT count(*) FROM audit_tree_nodes WHERE level = 0")
            ).scalar_one() == tree_size(upgraded)
    finally:
        upgraded.close()
