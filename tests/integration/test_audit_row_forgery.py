"""Issue 11, attack 4: the audit_log read table is a cache its owner can rewrite. A forged row is
reported by ``verify`` (CLI and API) by position, and an export never carries it as genuine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from eventstore.database import writing
from eventstore.personal_data import Sealer
from ledgerline.bootstrap import Components
from projections.audit_log.tables import define_audit_log
from projections.catalog import live_generation
from tests.integration.helpers import project_all, renames_by_an_admin
from tests.integration.test_cli import run


@pytest.fixture
def ledger(components: Components) -> Iterator[Components]:
    """Users changed by an admin from a known address, all projected (each event is a leaf of the
    log's tree from its commit on)."""
    renames_by_an_admin(components)
    project_all(components)
    yield components


def forge(components: Components, **values: Any) -> int:
    """The table's owner rewrites alice's rename in the live generation; returns its position."""
    alice = components.identity.find_user_id("alice")
    with writing(components.engine) as conn:
        table = define_audit_log(sa.MetaData(), live_generation(conn, "audit_log")[0])
        position = conn.execute(
            sa.select(table.c.position).where(
                table.c.resource_id == alice, table.c.action == "user.profile_updated"
            )
        ).scalar_one()
        conn.execute(table.update().where(table.c.position == position).values(**values))
    return position


FORGERIES = {
    "actor_type": {"actor_type": "system", "actor_id": None, "changes": {"full_name": "nobody"}},
    "status": {"status": "failure"},
    "sealed_ip": {"ip_address": None},
    "garbage_ip": {"ip_address": "not a sealed value"},
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_verify_reports_a_forged_audit_row_by_position(
    ledger: Components, tmp_path: Path, forgery: str
) -> None:
    url = ledger.settings.database.url
    assert json.loads(run(url, tmp_path, "audit", "verify").stdout)["forged_audit_entries"] == 0
    position = forge(ledger, **FORGERIES[forgery])

    done = run(url, tmp_path, "audit", "verify")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["ok"] is False, done.stdout
    assert report["forged_audit_entries"] == 1 and report["forged_audit_positions"] == [position]
    assert report["first_bad_position"] is None  # the events themselves are intact


def test_verify_reports_a_removed_audit_row_by_position(ledger: Components, tmp_path: Path) -> None:
    alice = ledger.identity.find_user_id("alice")
    with writing(ledger.engine) as conn:
        table = define_audit_log(sa.MetaData(), live_generation(conn, "audit_log")[0])
        position = (
            conn.execute(
                sa.select(table.c.position).where(table.c.resource_id == alice).order_by(table.c.position)
            )
            .scalars()
            .first()
        )
        conn.execute(table.delete().where(table.c.position == position))
    done = run(ledger.settings.database.url, tmp_path, "audit", "verify")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["forged_audit_positions"] == [position], done.stdout


def test_an_export_refuses_a_forged_audit_row(ledger: Components, tmp_path: Path) -> None:
    url = ledger.settings.database.url
    position = forge(ledger, **FORGERIES["actor_type"])
    key = ledger.checkpoint_keys.signer.verifier_key.encode()
    for fmt in ("ndjson", "csv"):
        done = run(url, tmp_path, "audit", "export", "--format", fmt)
        assert done.returncode == 1 and f"position {position}" in done.stderr, done.stderr
        assert "nobody" not in done.stdout and '"type":"signature"' not in done.stdout
        bundle = tmp_path / f"audit.{fmt}"
        bundle.write_text(done.stdout)
    checked = run(
        url, tmp_path, "audit", "verify-export", str(tmp_path / "audit.ndjson"), "--public-key", key
    )
    report = json.loads(checked.stdout)
    assert checked.returncode == 1 and report["ok"] is False, report


class _KeysAway(Sealer):
    """Seals as usual, but cannot read data keys back (the database refuses connections)."""

    def preload(self, sealed: Any) -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("too many clients already"))

    def reveal(self, sealed: Any) -> Any:
        raise sa.exc.OperationalError("SELECT", {}, Exception("too many clients already"))


def test_a_database_outage_is_never_reported_as_a_forged_row(ledger: Components) -> None:
    """Rows that cannot be revealed because the database is away get no verdict (the caller
    retries or answers 503), never "differs from its stored event"."""
    from projections.audit_log.evidence import AuditEvidence
    from projections.audit_log.queries import AuditFilter, select_entries

    evidence = AuditEvidence(
        ledger.identity.mapper, ledger.settings.database, _KeysAway(ledger.identity.data_keys)
    )
    with ledger.engine.connect() as conn:
        rows = list(conn.execute(select_entries(AuditFilter(), limit=20)).mappings())
        with pytest.raises(sa.exc.OperationalError):
            evidence.forged_in(conn, rows)


def test_an_event_that_no_longer_decodes_makes_its_row_forged_not_a_traceback(
    ledger: Components, tmp_path: Path
) -> None:
    from tests.integration.merkle_attacks import as_owner, events_sql

    position = forge(ledger, status="success")  # no change: the row stays as projected
    database = ledger.settings.database
    with as_owner(ledger) as conn:  # its event is what breaks
        conn.execute(
            events_sql(database, "UPDATE {events} SET state = :junk WHERE {pos} = :p"),
            {"junk": b"{not json", "p": position},
        )
    done = run(database.url, tmp_path, "audit", "verify")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert position in report["forged_audit_positions"]
