"""Verification: recompute the log's Merkle tree from the stored records and hold every stored
node and every signed checkpoint against it.

It reads only the event, tree and checkpoint tables (no secret, no read tables), so it runs on a
copy of the database, offline, with nothing but the log's public keys. ``ok`` only when every
stored event is a leaf (no event outside the tree, no leaf without its event), every stored node
is the one the events give, and every checkpoint is signed by a trusted key over the tree's root
at its size. ``since``: a checkpoint the auditor kept; the log must still extend it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from eventstore.audit_chain.checkpoints import tree_checkpoints
from eventstore.audit_chain.merkle import CompactRange, NodeId
from eventstore.audit_chain.note import Checkpoint, NoteError, VerifierKey, open_checkpoint
from eventstore.audit_chain.records import iter_records, leaf_hashes
from eventstore.audit_chain.tree import stored_size, stray_node, tree_nodes
from eventstore.database import Database

_CHUNK = 2000


@dataclass
class LogReport:
    ok: bool = True
    verified_through_position: int = 0
    head_hash: str | None = None  # the recomputed root of the verified tree, hex
    tree_size: int = 0  # leaves stored
    first_bad_position: int | None = None
    reason: str | None = None
    events_verified: int = 0
    checkpoints_verified: int = 0
    last_checkpoint_size: int | None = None
    since_size: int | None = None  # the kept checkpoint the log was checked to extend


class _Tampered(Exception):
    def __init__(self, position: int, reason: str) -> None:
        super().__init__(reason)
        self.position, self.reason = position, reason


def verify_log(
    engine: Engine,
    database: Database,
    trusted: Sequence[VerifierKey],
    origin: str,
    *,
    since: Checkpoint | None = None,
) -> LogReport:
    """``trusted``: the keys checkpoints may be signed with (the current and retired public keys:
    never the database's word); ``origin``: the log's name in them."""
    report = LogReport(since_size=None if since is None else since.size)
    with engine.connect() as conn:
        try:
            _walk(conn, database, _Checkpoints(conn, trusted, origin, since), report)
            _no_stray_node(engine)
        except _Tampered as bad:
            report.ok, report.first_bad_position, report.reason = False, bad.position, bad.reason
    return report


def _no_stray_node(engine: Engine) -> None:
    stray = stray_node(engine)
    if stray is not None:
        raise _Tampered(
            stray.start + 1,
            f"the tree holds a node ({stray.level}/{stray.index}) past its last leaf, inserted around "
            "the appender: appends fail once the tree reaches it; only the owner can remove it",
        )


class _Checkpoints:
    """The stored checkpoints in size order (keyset pages), plus the auditor's own."""

    def __init__(
        self, conn: Connection, trusted: Sequence[VerifierKey], origin: str, since: Checkpoint | None
    ) -> None:
        self.conn, self.trusted, self.origin, self.since = conn, tuple(trusted), origin, since
        # Only the rows stored when the walk starts: one signed while it runs covers events the
        # walk may not reach, and is no evidence of a removal.
        ceiling = conn.execute(sa.select(sa.func.max(tree_checkpoints.c.tree_size))).scalar()
        self.ceiling = -1 if ceiling is None else int(ceiling)
        self._stored = self._iter_stored()
        self.next = next(self._stored, None)

    def _iter_stored(self) -> Iterator[sa.Row]:
        after = -1
        while rows := list(
            self.conn.execute(
                sa.select(tree_checkpoints)
                .where(tree_checkpoints.c.tree_size > after, tree_checkpoints.c.tree_size <= self.ceiling)
                .order_by(tree_checkpoints.c.tree_size)
                .limit(500)
            )
        ):
            yield from rows
            after = rows[-1].tree_size

    def next_size(self) -> int | None:
        sizes = [s for s in (self.next.tree_size if self.next else None, self._since_size()) if s is not None]
        return min(sizes) if sizes else None

    def _since_size(self) -> int | None:
        return None if self.since is None else self.since.size

    def check_at(self, size: int, root: bytes, report: LogReport) -> None:
        if self.since is not None and self.since.size == size:
            if self.since.root_hash != root:
                raise _Tampered(
                    max(size, 1),
                    f"the log no longer extends the kept checkpoint of size {size}: rewritten or forked",
                )
            self.since = None
        while self.next is not None and self.next.tree_size == size:
            self._check_stored(self.next, root)
            report.checkpoints_verified += 1
            report.last_checkpoint_size = size
            self.next = next(self._stored, None)

    def _check_stored(self, row: sa.Row, root: bytes) -> None:
        try:
            checkpoint = open_checkpoint(row.note, self.trusted, origin=self.origin)
        except NoteError as error:
            raise _Tampered(
                max(row.tree_size, 1), f"the checkpoint of size {row.tree_size}: {error}"
            ) from None
        if checkpoint.size != row.tree_size or checkpoint.root_hash != bytes(row.root_hash):
            raise _Tampered(
                max(row.tree_size, 1), f"the checkpoint row of size {row.tree_size} differs from its note"
            )
        if checkpoint.root_hash != root:
            raise _Tampered(
                max(row.tree_size, 1),
                f"the log was rewritten: its tree of size {row.tree_size} no longer has the signed root",
            )

    def beyond(self, size: int) -> None:
        """Checkpoints left once the log's leaves are all walked: signed over leaves now gone."""
        if self.since is not None and self.since.size > size:
            raise _Tampered(
                size + 1,
                f"the log has {size} leaves, fewer than the kept checkpoint's {self.since.size}: truncated",
            )
        if self.next is not None:
            try:
                open_checkpoint(self.next.note, self.trusted, origin=self.origin)
            except NoteError as error:
                raise _Tampered(
                    size + 1,
                    f"a checkpoint row of size {self.next.tree_size}, past the log's end, is forged: {error}",
                ) from None
            raise _Tampered(
                size + 1,
                f"a checkpoint was signed over {self.next.tree_size} leaves but the log has {size}: "
                "events were removed",
            )


def _walk(conn: Connection, database: Database, checkpoints: _Checkpoints, report: LogReport) -> None:
    report.tree_size = stored_size(conn)
    border = CompactRange()
    checkpoints.check_at(0, border.root(), report)
    batch: list = []
    records = iter_records(conn, database, release=True)
    for record in records:
        batch.append(record)
        if len(batch) >= _CHUNK:
            border = _extend(conn, border, batch, checkpoints, report)
            batch = []
    if batch:
        border = _extend(conn, border, batch, checkpoints, report)
    if report.tree_size > border.size:
        raise _Tampered(border.size + 1, f"the tree has {report.tree_size} leaves but the log ends at "
                        f"position {border.size}: events were removed")  # fmt: skip
    checkpoints.beyond(border.size)


def _extend(
    conn: Connection, border: CompactRange, batch: list, checkpoints: _Checkpoints, report: LogReport
) -> CompactRange:
    leaves = leaf_hashes(batch, border.size)
    while leaves:
        target = checkpoints.next_size()
        take = (
            len(leaves) if target is None or target <= border.size else min(len(leaves), target - border.size)
        )
        border, created = border.extend(leaves[:take])
        leaves = leaves[take:]
        _compare(conn, created, report)
        checkpoints.check_at(border.size, border.root(), report)
        report.verified_through_position = border.size
        report.head_hash = border.root().hex()
    report.events_verified += len(batch)
    return border


def _compare(conn: Connection, created: list[tuple[NodeId, bytes]], report: LogReport) -> None:
    """Every node the events give must be stored as it is: a missing leaf is an event outside
    the tree, a different one an event (or node) changed since it was appended."""
    stored: dict[NodeId, bytes] = {}
    for level in sorted({node.level for node, _ in created}):
        indexes = [node.index for node, _ in created if node.level == level]
        rows = conn.execute(
            sa.select(tree_nodes.c.idx, tree_nodes.c.hash).where(
                tree_nodes.c.level == level, tree_nodes.c.idx.between(min(indexes), max(indexes))
            )
        )
        stored.update((NodeId(level, row.idx), bytes(row.hash)) for row in rows)
    for node, value in created:
        position = node.start + 1
        if node not in stored:
            if node.level == 0:
                raise _Tampered(
                    position, f"the event at position {position} is not in the tree (inserted around it)"
                )
            raise _Tampered(position, f"the tree lacks its node {node.level}/{node.index}")
        if stored[node] != value:
            if node.level == 0:
                raise _Tampered(
                    position,
                    f"the event at position {position} differs from the one appended "
                    "(changed, swapped or removed)",
                )
            raise _Tampered(position, f"the tree's node {node.level}/{node.index} was changed")
