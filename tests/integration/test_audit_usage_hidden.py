"""Key usage is traffic, not a change: the audit list and export leave ``api_key.usage_recorded``
out unless asked for by ``action`` (contract v1.1), and every total agrees with what is listed."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from domain.api_keys import ApiKey
from domain.audit import AuditContext, acting_as
from eventstore.personal_data import Sealer
from ledgerline.bootstrap import Components
from projections.audit_log.counts import USAGE_ACTION, counted
from projections.audit_log.evidence import AuditEvidence
from projections.audit_log.export import export
from projections.audit_log.projection import action_of
from projections.audit_log.queries import AuditFilter, count_entries, list_page
from tests.integration.helpers import project_all, register
from tests.integration.test_audit_counts import every_filter


def usage_everywhere(components: Components) -> None:
    identity = components.identity
    admin = register(identity, "root")
    for n in range(3):
        user = register(identity, f"user{n}")
        with acting_as(AuditContext(actor_id=admin.id, actor_type="user", request_id=f"r{n}")):
            key = identity.issue_api_key(user.id, name="k", permissions={"users:read": True}).result.id
        # even a request's context cannot make a usage entry an actor's (counts rely on it)
        with acting_as(AuditContext(actor_id=user.id, actor_type="user", request_id="sneaky")):
            for _ in range(n + 1):
                identity.record_api_key_usage(key, count=2, last_used_at=datetime.now(UTC), last_used_ip=None)
    project_all(components)


def test_the_usage_action_is_the_projections_name_for_it() -> None:
    assert action_of(ApiKey.UsageRecorded) == USAGE_ACTION


def test_usage_entries_carry_no_actor(components: Components) -> None:
    usage_everywhere(components)
    with components.engine.connect() as conn:
        rows, total = list_page(conn, AuditFilter(action=USAGE_ACTION), limit=100)
    assert total == 6 and all(row["actor_id"] is None and row["actor_type"] == "system" for row in rows)


def test_hidden_usage_totals_match_the_entries_listed_for_every_filter(components: Components) -> None:
    usage_everywhere(components)
    with components.engine.connect() as conn:
        for shown in every_filter(components):
            audit = replace(shown, without_usage=True)
            rows, total = list_page(conn, audit, order="asc", limit=1000)
            scanned = count_entries(conn, replace(audit, after_position=0))  # a scan, not the counts
            assert total == scanned == len(rows), audit
            from_counts = counted(conn, audit)
            assert from_counts is None or from_counts[0] == scanned, audit
            if audit.action == USAGE_ACTION:
                assert total and all(row["action"] == USAGE_ACTION for row in rows)
            else:
                assert all(row["action"] != USAGE_ACTION for row in rows), audit
        assert count_entries(conn, AuditFilter()) == count_entries(conn, AuditFilter(without_usage=True)) + 6


def test_the_export_leaves_usage_out_unless_asked(components: Components) -> None:
    usage_everywhere(components)
    evidence = AuditEvidence(
        components.identity.mapper, components.settings.database, Sealer(components.identity.data_keys)
    )

    def actions(audit: AuditFilter) -> list[str]:
        lines = b"".join(export(components.engine, evidence, components.checkpoint_keys, audit, "ndjson"))
        records = [json.loads(line) for line in lines.splitlines()]
        assert records[0]["filters"].get("without_usage") is True
        return [record["action"] for record in records if record.get("type") == "entry"]

    default = actions(AuditFilter(without_usage=True))
    assert default and USAGE_ACTION not in default
    assert set(actions(AuditFilter(action=USAGE_ACTION, without_usage=True))) == {USAGE_ACTION}
