"""A page of audit entries fetches the data keys of all its subjects in one query."""

from __future__ import annotations

import sqlalchemy as sa

from domain.audit import AuditContext, acting_as
from eventstore.personal_data import DataKeyStore, Sealer
from ledgerline.bootstrap import Components
from projections.audit_log.presenter import present_entries, present_entry
from projections.audit_log.queries import AuditFilter, list_entries
from tests.conftest import TEST_SECRET
from tests.integration.helpers import project_all, register


def test_one_query_fetches_every_key_a_page_needs(components: Components) -> None:
    for n in range(6):
        user = register(components.identity, f"user{n}")
        with acting_as(AuditContext(actor_id=user.id, actor_type="user", ip_address=f"198.51.100.{n}")):
            components.identity.update_user(user.id, full_name=f"Name {n}")
    project_all(components)
    with components.engine.connect() as conn:
        rows = list_entries(conn, AuditFilter(), limit=100)
    statements: list[str] = []
    sa.event.listen(components.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    sealer = Sealer(DataKeyStore(components.engine, bytes.fromhex(TEST_SECRET)))  # nothing cached yet
    entries = present_entries(rows, sealer)
    assert sum("data_keys" in statement for statement in statements) == 1
    assert entries == [present_entry(row, sealer) for row in rows]
    assert {e["ip_address"] for e in entries if e["action"] == "user.profile_updated"} == {
        f"198.51.100.{n}" for n in range(6)
    }
