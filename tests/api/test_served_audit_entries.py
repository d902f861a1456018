"""Issue 11, attack 4 (served entries): the audit_log table is a cache whoever owns the database
can rewrite. A row its stored event contradicts is never served as genuine: the list routes and
the single-entry route answer 503 naming the position, and serve again once the row is mended."""

from __future__ import annotations

import time

import sqlalchemy as sa

from eventstore.database import writing
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

    with writing(api.components.engine) as conn:  # the table's owner hides who did it
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

    with writing(api.components.engine) as conn:  # mended (a rebuild would do the same)
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


def _alter(api: Api, table: sa.Table, position: int, **values: object) -> None:
    with writing(api.components.engine) as conn:
        conn.execute(table.update().where(table.c.position == position).values(**values))


def test_every_column_of_a_served_row_is_vouched_for(api: Api) -> None:
    """Issue 12: served rows are checked by their MAC, not re-derived from their events. Any
    column changed by the table's owner (who lacks the secret key) makes the row forged."""
    table, position = _alice_registration(api)
    _projected(api, position)
    with api.components.engine.connect() as conn:
        row = dict(conn.execute(sa.select(table).where(table.c.position == position)).mappings().one())
        other = dict(
            conn.execute(sa.select(table).where(table.c.position != position).order_by(table.c.position))
            .mappings()
            .first()
            or {}
        )
    assert other, "another entry to borrow from"
    changes = {
        "action": "user.deleted",
        "resource_version": row["resource_version"] + 1,
        "request_id": "forged-request",
        "status": "failure",
        "changes": {**row["changes"], "is_superuser": True},
        "occurred_at": row["occurred_at"].replace(year=2001),
        "user_agent": other["user_agent"],  # a genuine sealed value of another row
        "mac": other["mac"],  # a genuine MAC of another row
    }
    for column, forged in changes.items():
        if forged == row[column]:
            continue
        _alter(api, table, position, **{column: forged})
        response = api.client.get(f"{AUDIT}/{position}", headers=api.as_admin())
        assert response.status_code == 503, (column, response.text)
        assert response.json()["type"].endswith("/audit-entry-forged")
        _alter(api, table, position, **{column: row[column]})
        assert api.client.get(f"{AUDIT}/{position}", headers=api.as_admin()).status_code == 200, column


def test_a_genuine_row_moved_to_another_position_is_forged(api: Api) -> None:
    table, position = _alice_registration(api)
    _projected(api, position)
    with writing(api.components.engine) as conn:
        row = dict(conn.execute(sa.select(table).where(table.c.position == position)).mappings().one())
        conn.execute(table.delete().where(table.c.position == position))
        conn.execute(table.insert().values(**{**row, "position": position + 100_000}))
    response = api.client.get(f"{AUDIT}/{position + 100_000}", headers=api.as_admin())
    assert response.status_code == 503, response.text
