"""Signed checkpoints of the log's tree: C2SP ``tlog-checkpoint`` notes (``signed-note``,
Ed25519), stored append-only in ``audit_tree_checkpoints``.

The key name is the log's origin (``LEDGERLINE_AUDIT_ORIGIN``). A new checkpoint is signed at
most every ``LEDGERLINE_CHECKPOINT_SECONDS`` while events arrive (the checkpointer worker) and
whenever one is asked for (``GET /audit-logs/checkpoint``, ``ledgerline audit checkpoint``),
always over the tree as committed. The signing key can be rotated: checkpoints signed before keep
verifying with the retired keys the configuration lists (``LEDGERLINE_AUDIT_RETIRED_KEYS``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Connection, Engine

from eventstore.audit_chain.note import (
    Checkpoint,
    NoteError,
    NoteSigner,
    VerifierKey,
    open_checkpoint,
    sign_checkpoint,
)
from eventstore.audit_chain.tree import root_at, stored_size
from eventstore.database import writing

logger = logging.getLogger("ledgerline.audit")
metadata = sa.MetaData()
tree_checkpoints = sa.Table(
    "audit_tree_checkpoints",
    metadata,
    sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
)


@dataclass(frozen=True)
class CheckpointKeys:
    """The log's signer (its key name is the origin) and every key its checkpoints may carry."""

    signer: NoteSigner
    retired: tuple[VerifierKey, ...] = ()

    @property
    def origin(self) -> str:
        return self.signer.name

    @property
    def public_key(self) -> bytes:
        """The current Ed25519 public key (32 bytes): it signs checkpoints and export bundles."""
        return self.signer.verifier_key.public_key

    @property
    def fingerprint(self) -> str:
        """A short name for the current key: the first 16 hex digits of its SHA-256."""
        return hashlib.sha256(self.public_key).hexdigest()[:16]

    @property
    def trusted(self) -> tuple[VerifierKey, ...]:
        return (self.signer.verifier_key, *self.retired)

    def sign(self, size: int, root_hash: bytes) -> str:
        return sign_checkpoint(Checkpoint(self.origin, size, root_hash), [self.signer])

    def open(self, note: str | bytes) -> Checkpoint:
        """A checkpoint of this log signed by one of its keys (else a ``NoteError``)."""
        return open_checkpoint(note, self.trusted, origin=self.origin)


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root_hash: bytes
    note: str
    signed_at: datetime


def _signed(row: sa.Row) -> SignedCheckpoint:
    signed_at = row.signed_at if row.signed_at.tzinfo else row.signed_at.replace(tzinfo=UTC)
    return SignedCheckpoint(row.tree_size, bytes(row.root_hash), row.note, signed_at)


def latest_checkpoint(conn: Connection, upto: int | None = None) -> SignedCheckpoint | None:
    """The stored checkpoint of the largest size (at most ``upto``), as stored: not yet opened.
    Rows are evidence only once their note opens; whoever can INSERT can add one."""
    query = sa.select(tree_checkpoints).order_by(tree_checkpoints.c.tree_size.desc()).limit(1)
    if upto is not None:
        query = query.where(tree_checkpoints.c.tree_size <= upto)
    row = conn.execute(query).first()
    return None if row is None else _signed(row)


def stored_checkpoint(conn: Connection, size: int) -> SignedCheckpoint | None:
    row = conn.execute(sa.select(tree_checkpoints).where(tree_checkpoints.c.tree_size == size)).first()
    return None if row is None else _signed(row)


def _genuine(stored: SignedCheckpoint | None, keys: CheckpointKeys, root: bytes) -> bool:
    """A stored row is served only if its note opens with the log's keys and signs this tree."""
    return stored is not None and stored.root_hash == root and _signs(keys, stored.note, stored.size, root)


@functools.lru_cache(maxsize=256)
def _signs(keys: CheckpointKeys, note: str, size: int, root: bytes) -> bool:
    """Does ``note`` open with ``keys`` as the checkpoint of this tree? (A pure function of its
    arguments: remembered, so a busy proof route verifies each stored note once.)"""
    try:
        checkpoint = keys.open(note)
    except NoteError:
        return False
    return (checkpoint.size, checkpoint.root_hash) == (size, root)


def checkpoint_now(engine: Engine, keys: CheckpointKeys) -> SignedCheckpoint:
    """A checkpoint covering every event committed before the call: the stored one of the
    tree's size if it is genuine, else a new one signed over the tree as it stands and stored
    (another process signing the same size at the same moment is fine: one row wins, both are
    the same tree). Rows past the tree's size, or whose note does not open, are never served."""
    with engine.connect() as conn:
        size = stored_size(conn)
        root = root_at(conn, size)
        stored = stored_checkpoint(conn, size)
    if _genuine(stored, keys, root):
        assert stored is not None
        return stored
    checkpoint = SignedCheckpoint(size, root, keys.sign(size, root), datetime.now(UTC))
    if stored is not None:  # a forged row holds this size: serve ours, `audit verify` names it
        logger.error("the stored checkpoint of size %d does not open with the log's keys", size)
        return checkpoint
    try:
        with writing(engine) as conn:
            conn.execute(
                sa.insert(tree_checkpoints).values(
                    tree_size=size, root_hash=root, signed_at=checkpoint.signed_at, note=checkpoint.note
                )
            )
    except sqlalchemy.exc.IntegrityError:
        with engine.connect() as conn:
            stored = stored_checkpoint(conn, size)
        return stored if _genuine(stored, keys, root) and stored is not None else checkpoint
    return checkpoint


def note_for(conn: Connection, keys: CheckpointKeys, size: int, root: bytes) -> str:
    """A signed note for the tree of ``size`` leaves whose root the caller read from the stored
    nodes: the stored checkpoint of that size when genuine, else one signed now (not kept: any
    earlier tree of an append-only log keeps its root)."""
    stored = stored_checkpoint(conn, size)
    if stored is not None and _genuine(stored, keys, root):
        return stored.note
    return keys.sign(size, root)


class Checkpointer:
    """Signs a checkpoint when the tree has grown past the latest one and it is at least
    ``interval`` seconds old: at most one a second by default, none while the log is idle."""

    name = "audit_checkpoints"

    def __init__(self, engine: Engine, keys: CheckpointKeys, *, interval: float = 1.0) -> None:
        self.engine = engine
        self.keys = keys
        self.interval = interval
        self._not_before = 0.0  # monotonic: no checkpoint is due before (every new event wakes it)

    def run_once(self) -> SignedCheckpoint | None:
        """Rows past the tree's size are not the latest (whoever can INSERT could add one to
        stop the signing); a row dated in the future does not postpone the next one."""
        if time.monotonic() < self._not_before:
            return None
        with self.engine.connect() as conn:
            size = stored_size(conn)
            latest = latest_checkpoint(conn, upto=size)
        if latest is not None and latest.size >= size:
            return None
        age = None if latest is None else (datetime.now(UTC) - latest.signed_at).total_seconds()
        if age is not None and 0 <= age < self.interval:
            self._not_before = time.monotonic() + self.interval - age
            return None
        signed = checkpoint_now(self.engine, self.keys)
        self._not_before = time.monotonic() + self.interval
        return signed
