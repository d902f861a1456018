"""GET /audit-logs/checkpoint, /{position}/proof and /consistency as an auditor checks them: with
nothing of Ledgerline's code. The records are rebuilt here from the stored rows by the published
layout (docs/audit-log-format.md), the tree by pymerkle, the notes and proofs by the short
RFC 9162 / C2SP verifiers below. SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pymerkle import InmemoryTree

from api.controllers.audit_proofs import inclusion
from eventstore.database import writing
from tests.api.conftest import Api
from tests.api.test_users_api import problem

AUDIT = "/api/v1/audit-logs"


# ---- an auditor's own tools -------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def consistent(first: int, second: int, first_root: bytes, second_root: bytes, path: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2 (0 < first < second); equal trees need an empty path."""
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_root, *path]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


def open_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """C2SP signed-note + tlog-checkpoint: (origin, size, root) when ``vkey`` signed it."""
    name, key_id, key = vkey.split("+", 2)
    raw = base64.b64decode(key)
    assert raw[0] == 1 and len(raw) == 33  # Ed25519
    assert sha256(name.encode() + b"\n\x01" + raw[1:]).hex()[:8] == key_id
    split = note.rindex("\n\n")
    text, signatures = note[: split + 1], note[split + 2 :].splitlines()
    mine = [line for line in signatures if line.startswith(f"\u2014 {name} ")]
    assert mine, "no signature by the log's key"
    blob = base64.b64decode(mine[0].rsplit(" ", 1)[1])
    assert blob[:4].hex() == key_id
    Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], text.encode())  # raises if forged
    origin, size, root = text.splitlines()[:3]
    return origin, int(size), base64.b64decode(root)


def records(api: Api) -> list[bytes]:
    """Every leaf's record, rebuilt from the stored rows as docs/audit-log-format.md lays it out
    (a position without an event is a void record)."""
    database = api.components.settings.database
    position = "rowid" if database.is_sqlite else "notification_id"
    with api.components.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {position} AS position, originator_id, originator_version, topic, state "
                f"FROM {database.events_table} ORDER BY {position}"
            )
        ).all()
    leaves: list[bytes] = []
    for row in rows:
        while len(leaves) + 1 < row.position:
            leaves.append(b"ledgerline-void-v1" + struct.pack(">q", len(leaves) + 1))
        aggregate = row.originator_id.encode() if database.is_sqlite else row.originator_id.bytes
        topic, state = row.topic.encode(), bytes(row.state)
        leaves.append(
            b"ledgerline-record-v1"
            + struct.pack(">qq", row.position, row.originator_version)
            + b"".join(struct.pack(">I", len(part)) + part for part in (aggregate, topic, state))
        )
    return leaves


def b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(value) for value in values]


# ---- the routes -------------------------------------------------------------------------------


def vkey_of(api: Api) -> str:
    published = api.client.get(f"{AUDIT}/public-key").json()["data"]
    return str(published["vkey"])


def checkpoint(api: Api) -> tuple[str, int, bytes]:
    answer = api.client.get(f"{AUDIT}/checkpoint", headers=api.as_admin())
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    origin, size, root = open_checkpoint(answer.text, vkey_of(api))
    assert origin == api.components.checkpoint_keys.origin
    return answer.text, size, root


def proof(api: Api, position: int, **params: int) -> dict[str, Any]:
    answer = api.client.get(f"{AUDIT}/{position}/proof", params=params, headers=api.as_admin())
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()["data"]
    return body


def changes(api: Api, count: int) -> None:
    for n in range(count):
        answer = api.client.patch("/api/v1/users/me", json={"full_name": f"Alice {n}"}, headers=api.as_user())
        assert answer.status_code == 200, answer.text


def check_inclusion(api: Api, body: dict[str, Any], position: int) -> int:
    """The proof holds with the auditor's tools alone; returns its tree size."""
    vkey = vkey_of(api)
    _, size, root = open_checkpoint(body["checkpoint"], vkey)
    leaves = records(api)
    assert body["position"] == position and body["leaf_index"] == position - 1
    assert body["tree_size"] == size and position <= size <= len(leaves)
    leaf = base64.b64decode(body["leaf_hash"])
    assert leaf == sha256(b"\x00" + leaves[position - 1])  # the event as stored, as the layout says
    path = b64(body["inclusion_path"])
    assert root_from_inclusion(position - 1, size, leaf, path) == root
    tree = InmemoryTree.init_from_entries(leaves[:size])  # a third party's tree over the same records
    assert tree.get_root(size) == root
    assert tree.prove_inclusion(position, size).path[1:] == path
    return size


def test_inclusion_proofs_verify_with_the_public_key_alone(api: Api) -> None:
    changes(api, 6)
    head = api.components.identity.head_position()
    for position in sorted({1, 2, head // 2, head - 1, head}):
        size = check_inclusion(api, proof(api, position), position)
        assert size >= head  # the default: a checkpoint covering every event committed before


def test_inclusion_in_earlier_trees(api: Api) -> None:
    changes(api, 4)
    head = api.components.identity.head_position()
    for position in (1, 3, head):
        for size in sorted({position, position + 1, (position + head) // 2, head} - {head + 1}):
            body = proof(api, position, tree_size=size)
            assert check_inclusion(api, body, position) == size


def test_consistency_between_two_checkpoints(api: Api) -> None:
    vkey = vkey_of(api)
    kept, first, first_root = checkpoint(api)
    changes(api, 5)
    _, second, second_root = checkpoint(api)
    assert second > first

    answer = api.client.get(
        f"{AUDIT}/consistency", params={"from": first, "to": second}, headers=api.as_admin()
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()["data"]
    assert (body["from"], body["to"]) == (first, second)
    assert open_checkpoint(body["checkpoint"], vkey)[1:] == (second, second_root)
    assert consistent(first, second, first_root, second_root, b64(body["proof"]))
    assert not consistent(first, second, sha256(b"forged"), second_root, b64(body["proof"]))

    changes(api, 1)  # `to` left out: the current tree, signed
    latest = api.client.get(f"{AUDIT}/consistency", params={"from": first}, headers=api.as_admin()).json()[
        "data"
    ]
    _, size, root = open_checkpoint(latest["checkpoint"], vkey)
    assert latest["to"] == size > second
    assert consistent(first, size, first_root, root, b64(latest["proof"]))
    assert InmemoryTree.init_from_entries(records(api)[:size]).get_root(size) == root

    for same in (0, second):  # nothing to prove
        trivial = api.client.get(
            f"{AUDIT}/consistency", params={"from": same, "to": same}, headers=api.as_admin()
        )
        assert trivial.status_code == 200 and trivial.json()["data"]["proof"] == []
    assert kept != latest["checkpoint"]


def test_unknown_positions_are_404_and_bad_sizes_422(api: Api) -> None:
    head = api.components.identity.head_position()
    admin = api.as_admin()
    for position in (0, head + 1000, 2**63 - 1):
        problem(api.client.get(f"{AUDIT}/{position}/proof", headers=admin), 404)
    for size in (-1, 0, 1, head + 1000, "x"):  # the proof of position 2 needs 2 <= tree_size <= head
        body = problem(api.client.get(f"{AUDIT}/2/proof", params={"tree_size": size}, headers=admin), 422)
        assert body["errors"][0]["field"] == "tree_size"
    for params in (
        {"from": head + 1000},
        {"from": 3, "to": 2},
        {"from": 0, "to": head + 1000},
        {"from": -1, "to": 2},
        {"to": 2},
        {"from": "x"},
    ):
        problem(api.client.get(f"{AUDIT}/consistency", params=params, headers=admin), 422)
    # The static routes beside /{position} still answer as themselves.
    assert api.client.get(f"{AUDIT}/1", headers=admin).json()["data"]["position"] == 1
    for path in ("verify", "statistics", "public-key"):
        assert api.client.get(f"{AUDIT}/{path}", headers=admin).status_code == 200


def test_only_admins_holding_audit_logs_read_get_proofs(api: Api) -> None:
    identity = api.components.identity
    scoped = identity.issue_api_key(api.admin_id, name="auditor", permissions={"audit_logs:read": True}).key
    unscoped = identity.issue_api_key(api.admin_id, name="reader", permissions={"users:read": True}).key
    for path, params in (("checkpoint", {}), ("1/proof", {}), ("consistency", {"from": 1})):
        url = f"{AUDIT}/{path}"
        assert api.client.get(url, params=params, headers={"X-API-Key": scoped}).status_code == 200
        problem(api.client.get(url, params=params, headers={"X-API-Key": unscoped}), 403)
        problem(api.client.get(url, params=params, headers=api.as_user()), 403)  # alice: not an admin
        problem(api.client.get(url, params=params), 401)


def test_public_key_names_the_verifier_key_of_the_checkpoints(api: Api) -> None:
    published = api.client.get(f"{AUDIT}/public-key").json()["data"]
    keys = api.components.checkpoint_keys
    assert published["origin"] == keys.origin and published["retired_vkeys"] == []
    name, _, key = published["vkey"].split("+", 2)
    assert name == keys.origin and base64.b64decode(key)[1:].hex() == published["public_key"]
    note, _, _ = checkpoint(api)  # the note verifies with it (checked inside)
    assert note.startswith(keys.origin + "\n")


def test_a_proof_reads_a_few_tree_nodes_not_the_log(api: Api) -> None:
    """O(log n): one row of the events table (does the position hold an event?) and one query of
    at most about 2 log2(n) nodes, whatever the log's length."""
    changes(api, 8)
    components = api.components
    head = components.identity.head_position()
    statements: list[tuple[str, Any]] = []
    here = threading.get_ident()  # the projectors share the engine

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if threading.get_ident() == here:
            statements.append((statement, parameters))

    sa.event.listen(components.engine, "before_cursor_execute", seen)
    try:
        body = inclusion(components.engine, components.settings.database, components.checkpoint_keys, 3, None)
    finally:
        sa.event.remove(components.engine, "before_cursor_execute", seen)
    assert body.tree_size >= head
    events = [s for s, _ in statements if components.settings.database.events_table in s]
    assert len(events) == 1 and "LIMIT" in events[0].upper()
    nodes = [p for s, p in statements if "audit_tree_nodes" in s and "MAX(idx)" not in s]
    bound = 2 * (body.tree_size.bit_length() + 1)
    assert nodes and all(len(p) // 2 <= bound for p in nodes), nodes
    assert len([s for s, _ in statements if not s.startswith("BEGIN")]) <= 8


@pytest.mark.parametrize("route", ["checkpoint", "1/proof", "consistency?from=0"])
def test_proof_routes_are_read_only(api: Api, route: str) -> None:
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        assert api.client.request(method, f"{AUDIT}/{route}", headers=api.as_admin()).status_code == 405


def test_a_node_removed_from_the_tree_is_a_problem_not_a_crash(api: Api) -> None:
    changes(api, 2)
    database = api.components.settings.database
    with writing(api.components.engine) as conn:  # the tables' owner removes the node over leaves 0-1
        if database.is_sqlite:
            conn.execute(sa.text("DROP TRIGGER audit_tree_nodes_no_delete"))
        else:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("DELETE FROM audit_tree_nodes WHERE level = 1 AND idx = 0"))
    body = problem(api.client.get(f"{AUDIT}/3/proof", params={"tree_size": 4}, headers=api.as_admin()), 503)
    assert body["type"].endswith("/tree-damaged") and "lacks node" in body["detail"]
    assert proof(api, 5, tree_size=5)["inclusion_path"]  # proofs that do not need it still work
