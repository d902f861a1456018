"""The sealer: extends the chain over newly stored events, in position order, and signs a
checkpoint every ``checkpoint_events`` events or ``checkpoint_seconds`` seconds.

Gap safety comes from the store: positions are committed in position order (the library's table
lock on PostgreSQL, the single writer on SQLite), so no event can commit behind the sealed head.
Seals are written in one transaction with a primary key on position: a second sealer racing this
one fails its insert and retries from the new head; nothing is sealed twice or skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from eventstore.audit_chain.records import GENESIS, next_seal, read_records
from eventstore.audit_chain.signing import Signer, checkpoint_message, utc
from eventstore.audit_chain.tables import audit_checkpoints, audit_seals
from eventstore.database import Database, writing


@dataclass(frozen=True)
class ChainHead:
    position: int
    seal: bytes


def sealed_head(conn: Connection) -> ChainHead:
    row = conn.execute(
        sa.select(audit_seals.c.position, audit_seals.c.seal).order_by(audit_seals.c.position.desc()).limit(1)
    ).first()
    return ChainHead(row.position, row.seal) if row else ChainHead(0, GENESIS)


def last_checkpoint(conn: Connection) -> sa.Row | None:
    return conn.execute(
        sa.select(audit_checkpoints).order_by(audit_checkpoints.c.position.desc()).limit(1)
    ).first()


class ChainSealer:
    name = "audit_chain"

    def __init__(
        self,
        engine: Engine,
        database: Database,
        signer: Signer,
        *,
        batch_size: int = 1000,
        checkpoint_events: int = 1000,
        checkpoint_seconds: float = 60.0,
    ) -> None:
        self.engine = engine
        self.database = database
        self.signer = signer
        self.batch_size = batch_size
        self.checkpoint_events = checkpoint_events
        self.checkpoint_seconds = checkpoint_seconds

    def run_batch(self) -> int:
        """Seal the next batch of stored events (and sign a checkpoint when one is due);
        returns how many events it sealed."""
        with writing(self.engine) as conn:
            head = sealed_head(conn)
            records = read_records(conn, self.database, head.position, self.batch_size)
            rows, seal = [], head.seal
            for record in records:
                digest = record.digest()
                seal = next_seal(seal, digest)
                rows.append({"position": record.position, "record_digest": digest, "seal": seal})
            if rows:
                conn.execute(sa.insert(audit_seals), rows)
                head = ChainHead(records[-1].position, seal)
            self._checkpoint_if_due(conn, head)
        return len(rows)

    def catch_up(self) -> int:
        total = 0
        while sealed := self.run_batch():
            total += sealed
        return total

    def _checkpoint_if_due(self, conn: Connection, head: ChainHead) -> None:
        last = last_checkpoint(conn)
        if head.position == 0 or (last is not None and last.position >= head.position):
            return
        now = datetime.now(UTC)
        due_by_count = last is None or head.position - last.position >= self.checkpoint_events
        due_by_time = last is None or (now - utc(last.signed_at)).total_seconds() >= self.checkpoint_seconds
        if due_by_count or due_by_time:
            conn.execute(sa.insert(audit_checkpoints).values(**self.checkpoint(head, now)))

    def checkpoint(self, head: ChainHead, signed_at: datetime) -> dict:
        return {
            "position": head.position,
            "head_hash": head.seal,
            "signed_at": signed_at,
            "key_id": self.signer.key_id,
            "public_key": self.signer.public_key,
            "signature": self.signer.sign(checkpoint_message(head.position, head.seal, signed_at)),
        }
