"""Issue 11, attack 4 (served entries): the audit_log table is a cache whoever owns the database
can rewrite. A row its stored event contradicts is never served as genuine: the list routes and
the single-entry route answer 503 naming the position, and serve again once the row is mended."""

from __future__ import annotations

import time

import sqlalchemy as sa

from projections.audit_log.tables import define_audit_log
from projections.catalog import live_generation
from tests.api.conftest import Api

AUDIT = "/api/v1/audit-logs"


def _projected(api: Api, position: int) -> None:
    for _ in range(200):
        if api.client.get(f"{AUDIT}/{position}", headers=api.as_admin()).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"position {position} was never projected")


def _alice_registration(api: Api) -> tuple[sa.Table, int]:
    """Alice's registration entry, once the projector has written it."""
    for _ in range(200):
        with api.components.engine.connect() as conn:
            table = define_audit_log(sa.MetaData(), live_generation(conn, "audit_log")[0])
            position = conn.execute(
                sa.select(table.c.position).where(
                    table.c.resource_id == api.user_id, table.c.action == "user.registered"
                )
            ).scalar()
        if position is not None:
            return table, position
        time.sleep(0.05)
    raise AssertionError("Alice's registration was never projected")


def test_a_forged_audit_row_is_never_served_as_genuine(api: Api) -> None:
    table, position = _alice_registration(api)
    _projected(api, position)
    genuine = api.client.get(f"{AUDIT}/{position}", headers=api.as_admin()).json()["data"]
    forged = "anonymous"  # the fixture registers Alice outside any request: genuinely "system"
    assert genuine["actor_type"] != forged

    with api.components.engine.begin() as conn:  # the table's owner hides who did it
        conn.execute(table.update().where(table.c.position == position).values(actor_type=forged))

    for path, params in (
        (f"{AUDIT}/{position}", {}),
        (AUDIT, {}),
        (AUDIT, {"resource_id": str(api.user_id), "resource_type": "user"}),
        (f"{AUDIT}/resource/user/{api.user_id}", {}),
    ):
        response = api.client.get(path, params=params, headers=api.as_admin())
        assert response.status_code == 503, (path, response.text)
        body = response.json()
        assert body["type"].endswith("/audit-entry-forged")
        assert str(position) in body["detail"]
        assert forged not in response.text

    with api.components.engine.begin() as conn:  # mended (a rebuild would do the same)
        conn.execute(
            table.update().where(table.c.position == position).values(actor_type=genuine["actor_type"])
        )
    response = api.client.get(f"{AUDIT}/{position}", headers=api.as_admin())
    assert response.status_code == 200 and response.json()["data"] == genuine


def test_no_proof_is_served_for_an_event_that_is_not_its_leaf(api: Api) -> None:
    """An event changed (or slipped into a void position) after its leaf was appended: the tree
    still proves the old leaf, but the route never presents it as this event's proof."""
    from tests.integration.merkle_attacks import make_superuser

    _, position = _alice_registration(api)
    assert api.client.get(f"{AUDIT}/{position}/proof", headers=api.as_admin()).status_code == 200
    make_superuser(api.components, position)
    response = api.client.get(f"{AUDIT}/{position}/proof", headers=api.as_admin())
    assert response.status_code == 503, response.text
    assert response.json()["type"].endswith("/tree-damaged")
