"""Stored records as the chain sees them: the bytes the event store holds, read straight from
its table (no decoding, no keys needed), and the two hashes of the chain.

    record_digest = SHA-256("ledgerline-record-v1" | position | aggregate id | version | topic | payload)
    seal          = SHA-256(previous seal | record_digest)      (the first previous seal: 32 zero bytes)

Every variable-length part is length-prefixed, so no two different records encode alike.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from eventstore.database import Database

GENESIS = bytes(32)
_RECORD_TAG = b"ledgerline-record-v1"


@dataclass(frozen=True)
class StoredRecord:
    position: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes

    def digest(self) -> bytes:
        topic = self.topic.encode()
        return hashlib.sha256(
            b"".join(
                (
                    _RECORD_TAG,
                    struct.pack(">qq", self.position, self.originator_version),
                    self.originator_id.bytes,
                    struct.pack(">I", len(topic)),
                    topic,
                    struct.pack(">I", len(self.state)),
                    self.state,
                )
            )
        ).digest()


def next_seal(previous: bytes, record_digest: bytes) -> bytes:
    return hashlib.sha256(previous + record_digest).digest()


def _select(database: Database) -> sa.TextClause:
    position = "rowid" if database.is_sqlite else "notification_id"
    return sa.text(
        f"SELECT {position} AS position, originator_id, originator_version, topic, state "
        f"FROM {database.events_table} WHERE {position} > :after AND {position} <= :upto "
        f"ORDER BY {position} LIMIT :limit"
    )


def read_records(
    conn: Connection, database: Database, after: int, limit: int, upto: int = 2**62
) -> list[StoredRecord]:
    rows = conn.execute(_select(database), {"after": after, "upto": upto, "limit": limit})
    return [
        StoredRecord(
            position=row.position,
            originator_id=row.originator_id
            if isinstance(row.originator_id, UUID)
            else UUID(row.originator_id),
            originator_version=row.originator_version,
            topic=row.topic,
            state=bytes(row.state),
        )
        for row in rows
    ]


def iter_records(
    conn: Connection, database: Database, after: int = 0, batch: int = 2000
) -> Iterator[StoredRecord]:
    """Every record after ``after`` in position order, read in keyset batches (constant memory)."""
    while records := read_records(conn, database, after, batch):
        yield from records
        after = records[-1].position
