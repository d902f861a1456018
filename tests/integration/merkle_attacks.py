"""What the tree tests share: the verifier as an auditor runs it, an independent RFC 9162 reference
(written from the RFC and docs/audit-log-format.md, not from the production code), and the moves
of an attacker who holds the table owner's rights (the append-only triggers out of the way)."""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from eventstore.audit_chain.checkpoints import SignedCheckpoint, checkpoint_now
from eventstore.audit_chain.merkle import CompactRange, NodeId
from eventstore.audit_chain.note import Checkpoint
from eventstore.audit_chain.records import leaf_hashes, read_records
from eventstore.audit_chain.tree import node_reader, stored_size
from eventstore.audit_chain.verify import LogReport, verify_log
from eventstore.database import Database, writing
from ledgerline.bootstrap import Components

EVIDENCE = ("audit_tree_nodes", "audit_tree_checkpoints")


# ---- the auditor --------------------------------------------------------------------------------


def verify(components: Components, since: Checkpoint | None = None) -> LogReport:
    keys = components.checkpoint_keys
    return verify_log(components.engine, components.settings.database, keys.trusted, keys.origin, since=since)


def sign(components: Components) -> SignedCheckpoint:
    """A checkpoint over the tree as it stands (what the checkpointer or the API would sign)."""
    return checkpoint_now(components.engine, components.checkpoint_keys)


def kept(components: Components, signed: SignedCheckpoint) -> Checkpoint:
    """The checkpoint as an auditor keeps it: its note, opened with the log's public key."""
    return components.checkpoint_keys.open(signed.note)


def checkpoint_sizes(components: Components) -> list[int]:
    with components.engine.connect() as conn:
        query = "SELECT tree_size FROM audit_tree_checkpoints ORDER BY tree_size"
        return list(conn.execute(sa.text(query)).scalars())


def tree_size(components: Components) -> int:
    with components.engine.connect() as conn:
        return stored_size(conn)


def positions(components: Components) -> list[int]:
    database = components.settings.database
    with components.engine.connect() as conn:
        return list(
            conn.execute(sa.text(f"SELECT {pos(database)} FROM {database.events_table} ORDER BY 1")).scalars()
        )


def position_of(components: Components, aggregate_id: UUID, version: int) -> int:
    database = components.settings.database
    stored: Any = aggregate_id.hex if database.is_sqlite else aggregate_id
    with components.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    f"SELECT {pos(database)} FROM {database.events_table} "
                    "WHERE originator_id = :id AND originator_version = :version"
                ),
                {"id": stored, "version": version},
            ).scalar_one()
        )


def pos(database: Database) -> str:
    return "rowid" if database.is_sqlite else "notification_id"


def leaves_and_head(engine: Engine, events_table: str, position: str) -> tuple[int, int]:
    """The stored tree's size and the highest committed position, in one statement (one snapshot)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_tree_nodes WHERE level = 0), "
                f"(SELECT COALESCE(MAX({position}), 0) FROM {events_table})"
            )
        ).one()
    return int(row[0]), int(row[1])


class Watcher:
    """Reads (leaves, head) over and over while writers write; every pair must be equal."""

    def __init__(self, components: Components) -> None:
        database = components.settings.database
        self._read = lambda: leaves_and_head(components.engine, database.events_table, pos(database))
        self.samples: list[tuple[int, int]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._read())
            except Exception as error:  # reported by behind()
                self.errors.append(error)
                return

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def behind(self) -> list[tuple[int, int]]:
        """The samples whose tree lagged (or ran ahead of) the committed events; none expected."""
        assert not self.errors, self.errors
        assert len({head for _, head in self.samples}) > 3, "the watcher did not see the writes"
        return [(leaves, head) for leaves, head in self.samples if leaves != head]


# ---- an independent reference (RFC 9162 2.1.1, docs/audit-log-format.md) -----------------------


def reference_leaf(position: int, originator_id: bytes, version: int, topic: str, state: bytes) -> bytes:
    """SHA-256(0x00 || record), the record laid out as the format document says."""
    topic_bytes = topic.encode()
    record = (
        b"ledgerline-record-v1"
        + position.to_bytes(8, "big", signed=True)
        + version.to_bytes(8, "big", signed=True)
        + struct.pack(">I", len(originator_id))
        + originator_id
        + struct.pack(">I", len(topic_bytes))
        + topic_bytes
        + struct.pack(">I", len(state))
        + state
    )
    return hashlib.sha256(b"\x00" + record).digest()


def reference_void_leaf(position: int) -> bytes:
    return hashlib.sha256(b"\x00ledgerline-void-v1" + position.to_bytes(8, "big", signed=True)).digest()


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[0:n]) by the RFC's recursive definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


def reference_leaves(components: Components) -> list[bytes]:
    """Every leaf of the log as the format document defines it, read from the events table."""
    database = components.settings.database
    with components.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {pos(database)} AS position, originator_id, originator_version, topic, state "
                f"FROM {database.events_table} ORDER BY 1"
            )
        ).all()
    leaves: list[bytes] = []
    for row in rows:
        leaves.extend(reference_void_leaf(p) for p in range(len(leaves) + 1, row.position))
        stored_id = (
            row.originator_id.bytes if isinstance(row.originator_id, UUID) else row.originator_id.encode()
        )
        leaves.append(
            reference_leaf(row.position, stored_id, row.originator_version, row.topic, bytes(row.state))
        )
    return leaves


# ---- the owner's moves --------------------------------------------------------------------------


@contextmanager
def as_owner(components: Components) -> Iterator[Connection]:
    """One transaction with the append-only triggers out of the way, as the tables' owner (the
    superuser test role on PostgreSQL: replication mode; SQLite: the triggers dropped)."""
    database = components.settings.database
    with writing(components.engine) as conn:
        if database.is_sqlite:
            for table in (database.events_table, *EVIDENCE):
                for operation in ("update", "delete"):
                    conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_{operation}"))
        else:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        yield conn


def events_sql(database: Database, statement: str) -> sa.TextClause:
    return sa.text(statement.format(events=database.events_table, pos=pos(database)))


def make_superuser(components: Components, position: int) -> None:
    """Rewrite a stored ``User.Registered`` so that it reads ``is_superuser: true``."""
    database = components.settings.database
    if database.is_sqlite:
        replaced = "CAST(replace(CAST(state AS TEXT), :was, :now) AS BLOB)"
    else:
        replaced = "convert_to(replace(convert_from(state, 'UTF8'), :was, :now), 'UTF8')"
    change = f"UPDATE {{events}} SET state = {replaced} WHERE {{pos}} = :p"
    with as_owner(components) as conn:
        params = {"p": position, "was": '"is_superuser":false', "now": '"is_superuser":true'}
        changed = conn.execute(events_sql(database, change), params)
        assert changed.rowcount == 1
        state = conn.execute(
            events_sql(database, "SELECT state FROM {events} WHERE {pos} = :p"), {"p": position}
        )
        assert b'"is_superuser":true' in bytes(state.scalar_one())


def rewrite_tree_from(conn: Connection, database: Database, position: int) -> int:
    """Recompute every node from leaf ``position - 1`` on from the events as they now are, and
    store them in place of the old ones (what an owner covering a rewrite would do). Returns the
    number of nodes rewritten."""
    start = position - 1
    border = CompactRange.read(start, node_reader(conn))
    records = read_records(conn, database, start, 10**9)
    _, nodes = border.extend(leaf_hashes(records, start))
    delete_nodes(conn, start)
    insert_nodes(conn, nodes)
    return len(nodes)


def delete_nodes(conn: Connection, start: int) -> None:
    """Every node over a leaf at index ``start`` or beyond (its subtree ends after ``start``)."""
    levels = conn.execute(sa.text("SELECT DISTINCT level FROM audit_tree_nodes")).scalars().all()
    for level in levels:
        conn.execute(
            sa.text("DELETE FROM audit_tree_nodes WHERE level = :level AND idx >= :first"),
            {"level": level, "first": start >> level},
        )


def insert_nodes(conn: Connection, nodes: Sequence[tuple[NodeId, bytes]]) -> None:
    if nodes:
        conn.execute(
            sa.text("INSERT INTO audit_tree_nodes (level, idx, hash) VALUES (:level, :idx, :hash)"),
            [{"level": node.level, "idx": node.index, "hash": value} for node, value in nodes],
        )


def truncate(components: Components, keep: int, *, nodes: bool, checkpoints: bool) -> None:
    """Delete every event after position ``keep``; with ``nodes`` the tree's nodes over them,
    with ``checkpoints`` every checkpoint signed over more than ``keep`` leaves."""
    database = components.settings.database
    with as_owner(components) as conn:
        conn.execute(events_sql(database, "DELETE FROM {events} WHERE {pos} > :keep"), {"keep": keep})
        if nodes:
            delete_nodes(conn, keep)
        if checkpoints:
            conn.execute(
                sa.text("DELETE FROM audit_tree_checkpoints WHERE tree_size > :keep"), {"keep": keep}
            )
