"""GET /audit-logs/export, /verify and /public-key as an auditor uses them over HTTP (the proof
routes: test_audit_proofs)."""

from __future__ import annotations

import csv
import io
import json
import os

import httpx
import pytest
import sqlalchemy as sa
from litestar.exceptions import LitestarException

from eventstore.audit_chain.bundle import verify_bundle
from eventstore.audit_chain.note import NoteSigner
from eventstore.database import writing
from projections.audit_log.tables import define_audit_log
from projections.catalog import live_generation
from tests.api.conftest import Api
from tests.integration.test_audit_export import independently_verified


def head_of(api: Api) -> int:
    """The newest position: the tree holds it from its commit on, no worker to wait for."""
    return api.components.identity.head_position()


def test_public_key_is_served_without_credentials(api: Api) -> None:
    answer = api.client.get("/api/v1/audit-logs/public-key")
    assert answer.status_code == 200
    key = answer.json()["data"]
    keys = api.components.checkpoint_keys
    assert key == {
        "algorithm": "Ed25519",
        "key_id": api.components.checkpoint_keys.fingerprint,
        "public_key": api.components.checkpoint_keys.public_key.hex(),
        "origin": keys.origin,
        "vkey": keys.signer.verifier_key.encode(),
        "retired_vkeys": [],
    }
    assert keys.signer.verifier_key.public_key.hex() == key["public_key"]  # one key signs both


def test_verify_reports_the_tree_then_the_first_tampered_position(api: Api) -> None:
    head = head_of(api)
    assert api.client.get("/api/v1/audit-logs/checkpoint", headers=api.as_admin()).status_code == 200
    answer = api.client.get("/api/v1/audit-logs/verify", headers=api.as_admin())
    assert answer.status_code == 200
    report = answer.json()["data"]
    assert report["ok"] is True and report["verified_through_position"] >= head
    assert report["tree_size"] == report["verified_through_position"]  # every stored event is a leaf
    assert report["first_bad_position"] is None and len(report["head_hash"]) == 64
    assert report["checkpoints_verified"] >= 1 and report["last_checkpoint_size"] >= head

    database = api.components.settings.database
    column = "rowid" if database.is_sqlite else "notification_id"
    with writing(api.components.engine) as conn:  # a database administrator at work
        if database.is_sqlite:
            conn.execute(sa.text(f"DROP TRIGGER {database.events_table}_no_update"))
        else:
            conn.execute(
                sa.text(f"DROP TRIGGER {database.events_table}_append_only ON {database.events_table}")
            )
        conn.execute(sa.text(f"UPDATE {database.events_table} SET topic = topic || 'x' WHERE {column} = 3"))
    report = api.client.get("/api/v1/audit-logs/verify", headers=api.as_admin()).json()["data"]
    assert report["ok"] is False and report["first_bad_position"] == 3
    assert report["verified_through_position"] < 3 and "position 3" in report["reason"]


def test_ndjson_export_is_a_signed_bundle_of_the_filtered_entries(api: Api) -> None:
    """Each entry carries its record and an inclusion proof to the bundle's checkpoint, which
    covers every event committed before the request; only the log's key anchors it."""
    changed = api.client.patch("/api/v1/users/me", json={"full_name": "Alice Changed"}, headers=api.as_user())
    head = int(changed.headers["X-Event-Position"])
    answer = api.client.get(
        "/api/v1/audit-logs/export",
        params={"format": "ndjson", "resource_id": str(api.user_id), "min_position": head},
        headers=api.as_admin(),
    )  # fmt: skip
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert answer.headers["content-disposition"].startswith('attachment; filename="audit-log-')
    lines = answer.content.splitlines(keepends=True)
    entries = [json.loads(line) for line in lines[1:-1]]
    assert {e["resource_id"] for e in entries} == {str(api.user_id)}
    assert entries[0]["action"] == "user.registered"
    assert "user.profile_updated" in {e["action"] for e in entries}
    header = json.loads(lines[0])
    assert header["filters"] == {"resource_id": str(api.user_id), "without_usage": True}
    assert header["format"] == "ledgerline-audit-export/2"
    assert all(e["leaf_index"] == e["position"] - 1 and e["record"] and e["inclusion_path"] for e in entries)

    keys = api.components.checkpoint_keys
    assert independently_verified(lines, keys.signer.verifier_key.public_key) == len(entries)
    report = verify_bundle(lines, [keys.signer.verifier_key])
    assert report.ok and report.entries == len(entries) and report.tree_size is not None
    assert report.tree_size >= head and report.origin == keys.origin
    assert not verify_bundle(lines, [NoteSigner(keys.origin, os.urandom(32)).verifier_key]).ok
    forged = [line.replace(b"Alice Changed", b"Alice Forged") for line in lines]
    assert not verify_bundle(forged, [keys.signer.verifier_key]).ok


def test_csv_export_and_bad_formats(api: Api) -> None:
    formula = {**api.as_user(), "User-Agent": '=HYPERLINK("http://x.invalid")'}
    assert (
        api.client.patch("/api/v1/users/me", json={"full_name": "Formula"}, headers=formula).status_code
        == 200
    )
    answer = api.client.get("/api/v1/audit-logs/export", params={"format": "csv"}, headers=api.as_admin())
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert rows and all(row["position"] for row in rows)
    assert [int(row["position"]) for row in rows] == sorted(int(row["position"]) for row in rows)
    assert "prev_hash" not in rows[0] and all(len(row["hash"]) == 64 for row in rows)  # leaf hashes
    agents = {row["user_agent"] for row in rows}
    assert '\'=HYPERLINK("http://x.invalid")' in agents and not any(a.startswith("=") for a in agents)
    for bad in ({"format": "xml"}, {"format": "csv", "status": "maybe"}, {"from": "yesterday"}):
        refused = api.client.get("/api/v1/audit-logs/export", params=bad, headers=api.as_admin())
        assert (
            refused.status_code in (400, 422)
            and refused.headers["content-type"] == "application/problem+json"
        )


def test_regular_users_may_neither_export_nor_verify(api: Api) -> None:
    for path in ("/api/v1/audit-logs/export", "/api/v1/audit-logs/verify"):
        assert api.client.get(path, headers=api.as_user()).status_code == 403
        assert api.client.get(path).status_code == 401


def test_a_forged_audit_row_is_reported_by_verify_and_not_exported(api: Api) -> None:
    """Issue 11, attack 4: the table's owner rewrites a row of the audit_log read table."""
    api.client.patch("/api/v1/users/me", json={"full_name": "Alice Changed"}, headers=api.as_user())
    head = head_of(api)
    listed = api.client.get(
        "/api/v1/audit-logs", params={"action": "user.profile_updated", "min_position": head},
        headers=api.as_admin(),
    ).json()["data"]  # fmt: skip
    position = listed[0]["position"]
    report = api.client.get("/api/v1/audit-logs/verify", headers=api.as_admin()).json()["data"]
    assert report["ok"] is True and report["forged_audit_entries"] == 0
    with writing(api.components.engine) as conn:
        table = define_audit_log(sa.MetaData(), live_generation(conn, "audit_log")[0])
        forged = {"actor_type": "system", "actor_id": None, "changes": {"full_name": "Nobody"}}
        conn.execute(table.update().where(table.c.position == position).values(**forged))

    report = api.client.get("/api/v1/audit-logs/verify", headers=api.as_admin()).json()["data"]
    assert report["ok"] is False and report["forged_audit_positions"] == [position]
    # The stream is cut unsigned: in process Litestar raises, over HTTP the chunked body ends short.
    with pytest.raises((LitestarException, httpx.RemoteProtocolError)):
        api.client.get("/api/v1/audit-logs/export", headers=api.as_admin())
