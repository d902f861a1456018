"""The audit log's per-value counts agree with a scan of the entries, for every value of every
field, live and after a rebuild."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa

from domain.audit import AuditContext, acting_as
from domain.errors import AuthenticationError
from eventstore.database import writing
from ledgerline.bootstrap import Components
from projections.audit_log.counts import DIMENSIONS, counted
from projections.audit_log.queries import AuditFilter, audit_log, count_entries, list_page
from projections.rebuild import rebuild
from tests.integration.helpers import STRONG_PASSWORD, project_all, register


def every_filter(components: Components) -> list[AuditFilter]:
    filters = [AuditFilter()]
    with components.engine.connect() as conn:
        for dimension in DIMENSIONS:
            for (value,) in conn.execute(sa.select(audit_log.c[dimension]).distinct()):
                if value is not None:
                    filters.append(AuditFilter(**{dimension: value}))
        for kind, resource in conn.execute(
            sa.select(audit_log.c.resource_type, audit_log.c.resource_id).distinct()
        ):
            filters.append(AuditFilter(resource_type=kind, resource_id=resource))
    return filters


def assert_counts_match_scans(components: Components) -> None:
    with components.engine.connect() as conn:
        for audit in every_filter(components):
            from_counts = counted(conn, audit)
            assert from_counts is not None
            scanned = count_entries(conn, replace(audit, after_position=0))  # bounds: counted by a scan
            assert from_counts[0] == scanned, audit
            rows, total = list_page(conn, audit, order="asc", limit=1000)
            assert (
                total == scanned
                and rows[0]["position"] == from_counts[1]
                and rows[-1]["position"] == from_counts[2]
            )


def test_counts_match_scans_live_and_after_a_rebuild(components: Components) -> None:
    identity = components.identity
    admin = register(identity, "root")
    for n in range(4):
        user = register(identity, f"user{n}")
        with acting_as(AuditContext(actor_id=admin.id, actor_type="user", request_id=f"r{n}")):
            identity.update_user(user.id, full_name=f"Name {n}")
            identity.issue_api_key(user.id, name="k", permissions={"users:read": True})
        with pytest.raises(AuthenticationError):
            identity.authenticate(f"user{n}", "wrong-" + STRONG_PASSWORD)
    project_all(components)
    assert_counts_match_scans(components)
    rebuild(components.projections["audit_log"], identity, components.engine)
    assert_counts_match_scans(components)
    with components.engine.connect() as conn:
        assert (
            counted(conn, AuditFilter(actor_id=admin.id, action="user.profile_updated")) is None
        )  # two fields: scanned
        assert counted(conn, AuditFilter(action="no.such_action")) == (0, None, None)


def test_serve_on_the_embedded_store_rebuilds_a_read_model_an_upgrade_changed(components: Components) -> None:
    from ledgerline.cli import _rebuild_outdated
    from projections import catalog

    register(components.identity, "alice")
    project_all(components)
    with writing(components.engine) as conn:  # as left by the version before the counts
        conn.execute(
            catalog.generations.update().where(catalog.generations.c.name == "audit_log").values(live_shape=1)
        )
    _rebuild_outdated(components)
    with components.engine.connect() as conn:
        generation, shape = catalog.live_generation(conn, "audit_log")
    assert (generation, shape) == (2, components.projections["audit_log"].shape)
    assert_counts_match_scans(components)
