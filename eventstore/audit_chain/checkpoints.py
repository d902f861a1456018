"""Signed checkpoints of the log's tree: C2SP ``tlog-checkpoint`` notes (``signed-note``,
Ed25519), stored append-only in ``audit_tree_checkpoints``.

The key name is the log's origin (``LEDGERLINE_AUDIT_ORIGIN``). A new checkpoint is signed at
most every ``LEDGERLINE_CHECKPOINT_SECONDS`` while events arrive (the checkpointer worker) and
whenever one is asked for (``GET /audit-logs/checkpoint``, ``ledgerline audit checkpoint``),
always over the tree as committed. The signing key can be rotated: checkpoints signed before keep
verifying with the retired keys the configuration lists (``LEDGERLINE_AUDIT_RETIRED_KEYS``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Connection, Engine

from eventstore.audit_chain.note import Checkpoint, NoteSigner, VerifierKey, open_checkpoint, sign_checkpoint
from eventstore.audit_chain.tree import root_at, stored_size
from eventstore.database import writing

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


def latest_checkpoint(conn: Connection) -> SignedCheckpoint | None:
    row = conn.execute(
        sa.select(tree_checkpoints).order_by(tree_checkpoints.c.tree_size.desc()).limit(1)
    ).first()
    return None if row is None else _signed(row)


def stored_checkpoint(conn: Connection, size: int) -> SignedCheckpoint | None:
    row = conn.execute(sa.select(tree_checkpoints).where(tree_checkpoints.c.tree_size == size)).first()
    return None if row is None else _signed(row)


def checkpoint_now(engine: Engine, keys: CheckpointKeys) -> SignedCheckpoint:
    """A stored checkpoint covering every event committed before the call: the latest one if it
    does, else a new one signed over the tree as it stands (another process signing the same
    size at the same moment is fine: one row wins, both are the same tree)."""
    with engine.connect() as conn:
        size = stored_size(conn)
        latest = latest_checkpoint(conn)
        if latest is not None and latest.size >= size:
            return latest
        root = root_at(conn, size)
    checkpoint = SignedCheckpoint(size, root, keys.sign(size, root), datetime.now(UTC))
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
        if stored is None:
            raise
        return stored
    return checkpoint


def checkpoint_for_size(conn: Connection, keys: CheckpointKeys, size: int) -> str:
    """A signed note for the tree of ``size`` leaves (at most the stored size): the stored
    checkpoint of that size, else one signed now over the stored nodes (not kept: any earlier
    tree of an append-only log keeps its root)."""
    stored = stored_checkpoint(conn, size)
    return stored.note if stored is not None else keys.sign(size, root_at(conn, size))


class Checkpointer:
    """Signs a checkpoint when the tree has grown past the latest one and it is at least
    ``interval`` seconds old: at most one a second by default, none while the log is idle."""

    name = "audit_checkpoints"

    def __init__(self, engine: Engine, keys: CheckpointKeys, *, interval: float = 1.0) -> None:
        self.engine = engine
        self.keys = keys
        self.interval = interval

    def run_once(self) -> SignedCheckpoint | None:
        with self.engine.connect() as conn:
            size = stored_size(conn)
            latest = latest_checkpoint(conn)
        if latest is not None and latest.size >= size:
            return None
        if latest is not None and (datetime.now(UTC) - latest.signed_at).total_seconds() < self.interval:
            return None
        return checkpoint_now(self.engine, self.keys)
