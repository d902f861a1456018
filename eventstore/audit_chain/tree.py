"""The event log's RFC 9162 Merkle tree as stored, extended in the append's own transaction.

``audit_tree_nodes`` holds every perfect subtree of the tree, one row per ``NodeId`` (level,
index): a leaf (level 0, index = position - 1) and each parent the moment its last leaf arrives,
so a stored node never changes and the table is append-only (database triggers; the runtime role
may only INSERT and SELECT). About two rows per event; an inclusion or consistency proof reads at
most about 2 log2(n) of them by primary key, in one query.

``TreeAppender`` extends the tree inside the transaction that appends the events, after their
INSERTs and before the COMMIT, while the store's write lock (PostgreSQL's table lock, SQLite's
single writer) still orders positions: an event and its leaf commit together or not at all, so no
committed event is ever outside the tree. Positions no event holds (PostgreSQL's sequence skips
the ids of rolled-back saves, and nothing can commit behind the lock) become void leaves. The
appender never reads events back to cover them: an event inserted around it (by whoever holds
the runtime role's credentials) is not a leaf, and ``verify`` reports it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from eventstore.audit_chain.merkle import (
    CompactRange,
    NodeId,
    NodeReader,
    ProofError,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    subtree_nodes,
    tree_root,
)
from eventstore.audit_chain.records import StoredRecord, leaf_hashes, read_records

NODES = "audit_tree_nodes"

metadata = sa.MetaData()
tree_nodes = sa.Table(
    NODES,
    metadata,
    sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

SIZE_SQL = f"SELECT COALESCE(MAX(idx) + 1, 0) FROM {NODES} WHERE level = 0"


# PostgreSQL: the stored size and its border (one perfect subtree per bit set in the size) in one
# statement, queued before a group's saves: no round trip of its own, whichever process last
# appended. A missing border node leaves a row of NULLs, which ``border_from_rows`` refuses.
BORDER_SQL = f"""
WITH s AS (SELECT COALESCE(MAX(idx) + 1, 0) AS size FROM {NODES} WHERE level = 0)
SELECT s.size, b.level, t.hash
FROM s
LEFT JOIN generate_series(0, 62) AS b(level) ON (s.size >> b.level) & 1 = 1
LEFT JOIN {NODES} t ON t.level = b.level AND t.idx = (s.size >> b.level) - 1
"""


def border_from_rows(rows: Sequence[Any]) -> CompactRange:
    """The border ``BORDER_SQL`` answered, largest subtree first."""
    values = [_values(row) for row in rows]
    size = int(values[0][0])
    hashes = {
        int(level): bytes(value) for _, level, value in values if level is not None and value is not None
    }
    levels = [level for level in reversed(range(size.bit_length())) if size >> level & 1]
    missing = [level for level in levels if level not in hashes]
    if missing:
        raise ProofError(f"the stored tree lacks its level-{missing[0]} border node of its size {size}")
    return CompactRange(size, tuple(hashes[level] for level in levels))


class TreeAppender:
    """Extends the stored tree over a DB-API cursor of the appending transaction (psycopg's
    ``%s`` or sqlite3's ``?`` placeholders). On SQLite it keeps the border of the last size it
    saw committed, so the common append reads one number (the stored size) and writes its
    nodes; PostgreSQL reads the border with the size (``BORDER_SQL``)."""

    def __init__(self, placeholder: str) -> None:
        self._mark = placeholder
        self._known = CompactRange()
        self._lock = threading.Lock()

    def extend(self, cursor: Any, border: CompactRange, records: Sequence[StoredRecord]) -> CompactRange:
        """Extend the stored tree (``border``) by ``records`` (in position order, after its size)
        with ``cursor``; returns the border after, for ``committed`` once it commits."""
        after, nodes = border.extend(leaf_hashes(records, border.size))
        self.insert(cursor, nodes)
        return after

    def ask_border(self, cursor: Any) -> None:
        """PostgreSQL: queue ``BORDER_SQL`` (in a pipeline, after the write lock)."""
        cursor.execute(BORDER_SQL)

    def asked_border(self, cursor: Any) -> CompactRange:
        """The answer to ``ask_border``."""
        return border_from_rows(cursor.fetchall())

    def border(self, cursor: Any) -> CompactRange:
        """The stored tree's border, read in the appending transaction (after the write lock)."""
        cursor.execute(SIZE_SQL)
        size = int(_values(cursor.fetchone())[0])
        with self._lock:
            known = self._known
        return known if known.size == size else self._read_border(cursor, size)

    def insert(self, cursor: Any, nodes: list[tuple[NodeId, bytes]]) -> None:
        if not nodes:
            return
        if self._mark == "%s":  # one statement for the whole batch
            cursor.execute(
                f"INSERT INTO {NODES} (level, idx, hash) "
                "SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[])",
                ([n.level for n, _ in nodes], [n.index for n, _ in nodes], [h for _, h in nodes]),
            )
        else:
            cursor.executemany(
                f"INSERT INTO {NODES} (level, idx, hash) VALUES (?, ?, ?)",
                [(n.level, n.index, h) for n, h in nodes],
            )

    def committed(self, border: CompactRange) -> None:
        with self._lock:
            if border.size > self._known.size:
                self._known = border

    def _read_border(self, cursor: Any, size: int) -> CompactRange:
        def read(ids: Sequence[NodeId]) -> list[bytes]:
            wanted = " OR ".join(f"(level = {self._mark} AND idx = {self._mark})" for _ in ids)
            cursor.execute(
                f"SELECT level, idx, hash FROM {NODES} WHERE {wanted}",
                [value for node in ids for value in (node.level, node.index)],
            )
            found = {NodeId(*_values(row)[:2]): bytes(_values(row)[2]) for row in cursor.fetchall()}
            missing = [node for node in ids if node not in found]
            if missing:
                raise ProofError(f"the stored tree lacks node {missing[0]} of its size {size}")
            return [found[node] for node in ids]

        return CompactRange.read(size, read)


def _values(row: Any) -> tuple[Any, ...]:
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


# ---- reading the tree (SQLAlchemy connections: the API, the CLI, verify) ---------------------


def stored_size(conn: Connection) -> int:
    return int(conn.execute(sa.text(SIZE_SQL)).scalar_one())


def stray_node(engine: Engine) -> NodeId | None:
    """A stored node that the tree of the stored size does not have (its range runs past the
    last leaf, or its address is impossible), read in one snapshot: every genuine node is
    complete when it commits. Whoever can INSERT could plant one; appends fail once the tree
    reaches it (a primary-key conflict), so ``verify`` names it."""
    snapshot = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**snapshot) as conn, conn.begin():
        size = stored_size(conn)
        odd = conn.execute(
            sa.select(tree_nodes.c.level, tree_nodes.c.idx)
            .where(sa.or_(tree_nodes.c.level < 0, tree_nodes.c.level > 62, tree_nodes.c.idx < 0))
            .limit(1)
        ).first()
        if odd is not None:
            return NodeId(max(odd.level, 0), max(odd.idx, 0))
        for level in range(1, 63):
            row = conn.execute(
                sa.select(tree_nodes.c.idx)
                .where(tree_nodes.c.level == level, tree_nodes.c.idx >= size >> level)
                .limit(1)
            ).first()
            if row is not None:
                return NodeId(level, row.idx)
    return None


_NODES_PG = sa.text(  # one statement text whatever the count: compiled once, prepared by psycopg
    f"SELECT level, idx, hash FROM {NODES} WHERE (level, idx) IN "
    "(SELECT * FROM unnest(CAST(:levels AS smallint[]), CAST(:idxs AS bigint[])))"
)


def read_nodes(conn: Connection, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """The stored hashes of the asked nodes (those the table has), in one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    if conn.dialect.name == "postgresql":
        params = {"levels": [n.level for n in wanted], "idxs": [n.index for n in wanted]}
        rows = conn.execute(_NODES_PG, params)
    else:
        pairs = sa.or_(*(sa.and_(tree_nodes.c.level == n.level, tree_nodes.c.idx == n.index) for n in wanted))
        rows = conn.execute(sa.select(tree_nodes).where(pairs))
    return {NodeId(row.level, row.idx): bytes(row.hash) for row in rows}


class NodeBatch:
    """A ``NodeReader`` over nodes read ahead in one query (``fetch``): a proof, its leaf and its
    tree's root from one round trip. A node the table lacks is a ``ProofError``."""

    def __init__(self, conn: Connection, ids: Iterable[NodeId]) -> None:
        self._known = read_nodes(conn, ids)

    def __call__(self, ids: Sequence[NodeId]) -> list[bytes]:
        missing = [node for node in ids if node not in self._known]
        if missing:
            raise ProofError(f"the stored tree lacks node {missing[0]}")
        return [self._known[node] for node in ids]


def node_reader(conn: Connection) -> NodeReader:
    """Reads the asked nodes in one query; a node the table lacks is a ``ProofError``."""
    return lambda ids: NodeBatch(conn, ids)(ids)


def inclusion_with_root(conn: Connection, index: int, size: int) -> tuple[bytes, list[bytes], bytes]:
    """Leaf ``index``, its RFC 9162 inclusion path in the tree of ``size`` leaves, and that
    tree's root: one read of at most about 3 log2(size) nodes."""
    elements = inclusion_proof_nodes(index, size)
    nodes = NodeBatch(conn, [NodeId(0, index), *subtree_nodes(0, size), *(n for e in elements for n in e)])
    (leaf,) = nodes([NodeId(0, index)])
    return leaf, inclusion_proof(index, size, nodes), tree_root(size, nodes)


def consistency_with_root(conn: Connection, first: int, second: int) -> tuple[list[bytes], bytes]:
    """The RFC 9162 consistency path from tree ``first`` to tree ``second`` and the root of
    ``second``, from one read."""
    elements = consistency_proof_nodes(first, second)
    border = subtree_nodes(0, second) if second else ()
    nodes = NodeBatch(conn, [*border, *(n for e in elements for n in e)])
    return consistency_proof(first, second, nodes), tree_root(second, nodes)


def root_at(conn: Connection, size: int) -> bytes:
    return tree_root(size, node_reader(conn))


def leaf_at(conn: Connection, index: int) -> bytes:
    (leaf,) = node_reader(conn)([NodeId(0, index)])
    return leaf


_INSERT_PG = sa.text(  # one statement per batch (an executemany is a statement per row)
    f"INSERT INTO {NODES} (level, idx, hash) "
    "SELECT * FROM unnest(CAST(:levels AS smallint[]), CAST(:idxs AS bigint[]), CAST(:hashes AS bytea[]))"
)


def _insert(conn: Connection, nodes: list[tuple[NodeId, bytes]]) -> None:
    if conn.dialect.name == "postgresql":
        levels, idxs, hashes = [n.level for n, _ in nodes], [n.index for n, _ in nodes], [h for _, h in nodes]
        conn.execute(_INSERT_PG, {"levels": levels, "idxs": idxs, "hashes": hashes})
    else:
        conn.execute(sa.insert(tree_nodes), [{"level": n.level, "idx": n.index, "hash": h} for n, h in nodes])


def backfill(conn: Connection, batch: int = 2000) -> int:
    """Extend the stored tree over the events stored before it existed (``db init``, as the
    owner, under the store's write lock: the migration that creates the tree). Returns the size."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE identity_events IN EXCLUSIVE MODE")
    border = CompactRange.read(size := stored_size(conn), node_reader(conn))
    while records := read_records(conn, None, size, batch):
        border, nodes = border.extend(leaf_hashes(records, size))
        _insert(conn, nodes)
        size = border.size
    return size
