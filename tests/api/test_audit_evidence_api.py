"""GET /audit-logs/export, /verify and /public-key as an auditor uses them over HTTP."""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import pytest
import sqlalchemy as sa
from litestar.exceptions import LitestarException

from eventstore.audit_chain.bundle import verify_bundle
from projections.audit_log.tables import define_audit_log
from projections.catalog import live_generation
from tests.api.conftest import Api


def sealed_through_head(api: Api) -> int:
    """Wait until the sealer has covered every stored event; returns the head."""
    head = api.components.identity.head_position()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with api.components.engine.connect() as conn:
            if (conn.execute(sa.text("SELECT max(position) FROM audit_seals")).scalar() or 0) >= head:
                return head
        time.sleep(0.05)
    raise AssertionError("the sealer did not reach the head")


def test_public_key_is_served_without_credentials(api: Api) -> None:
    sealed_through_head(api)
    answer = api.client.get("/api/v1/audit-logs/public-key")
    assert answer.status_code == 200
    key = answer.json()["data"]
    assert key == {
        "algorithm": "Ed25519",
        "key_id": api.components.signer.key_id,
        "public_key": api.components.signer.public_key.hex(),
    }


def test_verify_reports_the_chain_then_the_first_tampered_position(api: Api) -> None:
    head = sealed_through_head(api)
    answer = api.client.get("/api/v1/audit-logs/verify", headers=api.as_admin())
    assert answer.status_code == 200
    report = answer.json()["data"]
    assert report["ok"] is True and report["verified_through_position"] == head
    assert report["first_bad_position"] is None and len(report["head_hash"]) == 64

    database = api.components.settings.database
    column = "rowid" if database.is_sqlite else "notification_id"
    with api.components.engine.begin() as conn:  # a database administrator at work
        if database.is_sqlite:
            conn.execute(sa.text(f"DROP TRIGGER {database.events_table}_no_update"))
        else:
            conn.execute(
                sa.text(f"DROP TRIGGER {database.events_table}_append_only ON {database.events_table}")
            )
        conn.execute(sa.text(f"UPDATE {database.events_table} SET topic = topic || 'x' WHERE {column} = 3"))
    report = api.client.get("/api/v1/audit-logs/verify", headers=api.as_admin()).json()["data"]
    assert (
        report["ok"] is False
        and report["first_bad_position"] == 3
        and report["verified_through_position"] == 2
    )


def test_ndjson_export_is_a_signed_bundle_of_the_filtered_entries(api: Api) -> None:
    api.client.patch("/api/v1/users/me", json={"full_name": "Alice Changed"}, headers=api.as_user())
    sealed_through_head(api)
    answer = api.client.get(
        "/api/v1/audit-logs/export", params={"format": "ndjson", "resource_id": str(api.user_id)},
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
    assert json.loads(lines[0])["filters"] == {"resource_id": str(api.user_id)}

    report = verify_bundle(lines, frozenset({api.components.signer.public_key}))
    assert report.ok and report.entries == len(entries) and report.unsealed_entries == 0
    forged = [line.replace(b"Alice Changed", b"Alice Forged") for line in lines]
    assert not verify_bundle(forged, frozenset({api.components.signer.public_key})).ok


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
    head = sealed_through_head(api)
    listed = api.client.get(
        "/api/v1/audit-logs", params={"action": "user.profile_updated", "min_position": head},
        headers=api.as_admin(),
    ).json()["data"]  # fmt: skip
    position = listed[0]["position"]
    report = api.client.get("/api/v1/audit-logs/verify", headers=api.as_admin()).json()["data"]
    assert report["ok"] is True and report["forged_audit_entries"] == 0
    with api.components.engine.begin() as conn:
        table = define_audit_log(sa.MetaData(), live_generation(conn, "audit_log")[0])
        forged = {"actor_type": "system", "actor_id": None, "changes": {"full_name": "Nobody"}}
        conn.execute(table.update().where(table.c.position == position).values(**forged))

    report = api.client.get("/api/v1/audit-logs/verify", headers=api.as_admin()).json()["data"]
    assert report["ok"] is False and report["forged_audit_positions"] == [position]
    # The stream is cut unsigned: in process Litestar raises, over HTTP the chunked body ends short.
    with pytest.raises((LitestarException, httpx.RemoteProtocolError)):
        api.client.get("/api/v1/audit-logs/export", headers=api.as_admin())
