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
    originator_id: bytes  # as stored: the 16 bytes of a PostgreSQL uuid, SQLite's text as UTF-8
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
                    struct.pack(">I", len(self.originator_id)),
                    self.originator_id,
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
            row.position, _raw(row.originator_id), row.originator_version, row.topic, _raw(row.state)
        )
        for row in rows
    ]


def _raw(value: object) -> bytes:
    """A column's value as stored (so an id rewritten to another spelling no longer matches)."""
    if isinstance(value, UUID):
        return value.bytes
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def iter_records(
    conn: Connection, database: Database, after: int = 0, batch: int = 2000, *, release: bool = False
) -> Iterator[StoredRecord]:
    """Every record after ``after`` in position order, read in keyset batches (constant memory)."""
    while records := read_records(conn, database, after, batch):
        if release:  # end the read transaction between pages (SQLite could not empty its WAL)
            conn.rollback()
        yield from records
        after = records[-1].position
