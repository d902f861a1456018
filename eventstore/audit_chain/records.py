"""Stored records as the log's Merkle tree sees them: the bytes the event store holds, read
straight from its table (no decoding, no keys needed), and the leaf each one is.

    record      = "ledgerline-record-v1" | position | version | len | aggregate id | len | topic
                  | len | payload                    (position, version: 8-byte big-endian
                                                      signed; len: 4-byte big-endian unsigned)
    void record = "ledgerline-void-v1" | position     (a position no event holds: PostgreSQL's
                                                      sequence skips the ids of rolled-back saves)
    leaf hash   = SHA-256(0x00 | record)              (RFC 9162; leaf index = position - 1)

The aggregate id is the column's value as stored: the 16 bytes of a PostgreSQL ``uuid``, the
32-character hex text of SQLite's as UTF-8. Every variable-length part is length-prefixed, so no
two different records encode alike, and the tags keep a void leaf from ever equalling an event.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from eventstore.audit_chain.merkle import leaf_hash
from eventstore.database import Database

_RECORD_TAG = b"ledgerline-record-v1"
_VOID_TAG = b"ledgerline-void-v1"


@dataclass(frozen=True)
class StoredRecord:
    position: int
    originator_id: bytes  # as stored: the 16 bytes of a PostgreSQL uuid, SQLite's text as UTF-8
    originator_version: int
    topic: str
    state: bytes

    def leaf(self) -> bytes:
        topic = self.topic.encode()
        return b"".join(
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

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf())


def parse_record(data: bytes) -> StoredRecord:
    """The event record ``data`` encodes (the exact inverse of ``StoredRecord.leaf``): a
    ``ValueError`` for anything else, a void record or trailing bytes included."""
    if not data.startswith(_RECORD_TAG):
        raise ValueError("not a ledgerline-record-v1 (a void leaf holds no event)")
    offset = len(_RECORD_TAG)
    try:
        position, version = struct.unpack_from(">qq", data, offset)
        offset += 16
        parts: list[bytes] = []
        for _ in range(3):  # aggregate id, topic, payload
            (length,) = struct.unpack_from(">I", data, offset)
            offset += 4
            if offset + length > len(data):
                raise ValueError("a length runs past the record's end")
            parts.append(data[offset : offset + length])
            offset += length
    except struct.error:
        raise ValueError("the record is cut short") from None
    if offset != len(data):
        raise ValueError("bytes after the record's payload")
    originator_id, topic, state = parts
    return StoredRecord(position, originator_id, version, topic.decode(), state)


def void_leaf(position: int) -> bytes:
    return _VOID_TAG + struct.pack(">q", position)


def void_leaf_hash(position: int) -> bytes:
    return leaf_hash(void_leaf(position))


def leaf_hashes(records: Sequence[StoredRecord], after: int) -> list[bytes]:
    """The leaves of positions ``after + 1`` through the last record's: each record's, and a
    void leaf for every position between them that holds no event."""
    leaves: list[bytes] = []
    position = after
    for record in records:
        if record.position <= position:
            raise ValueError(f"records out of order at position {record.position}")
        leaves.extend(void_leaf_hash(p) for p in range(position + 1, record.position))
        leaves.append(record.leaf_hash())
        position = record.position
    return leaves


def _select(sqlite: bool) -> sa.TextClause:
    position, table = ("rowid", "stored_events") if sqlite else ("notification_id", "identity_events")
    return sa.text(
        f"SELECT {position} AS position, originator_id, originator_version, topic, state "
        f"FROM {table} WHERE {position} > :after AND {position} <= :upto "
        f"ORDER BY {position} LIMIT :limit"
    )


def read_records(
    conn: Connection, database: Database | None, after: int, limit: int, upto: int = 2**62
) -> list[StoredRecord]:
    """``database`` None: the store behind ``conn`` (its dialect tells which)."""
    sqlite = database.is_sqlite if database is not None else conn.dialect.name == "sqlite"
    rows = conn.execute(_select(sqlite), {"after": after, "upto": upto, "limit": limit})
    return [
        StoredRecord(
            row.position, _raw(row.originator_id), row.originator_version, row.topic, _raw(row.state)
        )
        for row in rows
    ]


def read_records_at(
    conn: Connection, database: Database | None, positions: Sequence[int]
) -> list[StoredRecord]:
    """The records at ``positions`` (one query; positions no event holds are left out), in
    position order."""
    if not positions:
        return []
    sqlite = database.is_sqlite if database is not None else conn.dialect.name == "sqlite"
    position, table = ("rowid", "stored_events") if sqlite else ("notification_id", "identity_events")
    query = sa.text(
        f"SELECT {position} AS position, originator_id, originator_version, topic, state "
        f"FROM {table} WHERE {position} IN :positions ORDER BY {position}"
    ).bindparams(sa.bindparam("positions", expanding=True))
    rows = conn.execute(query, {"positions": list(positions)})
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
    conn: Connection, database: Database | None, after: int = 0, batch: int = 2000, *, release: bool = False
) -> Iterator[StoredRecord]:
    """Every record after ``after`` in position order, read in keyset batches (constant memory)."""
    while records := read_records(conn, database, after, batch):
        if release:  # end the read transaction between pages (SQLite could not empty its WAL)
            conn.rollback()
        yield from records
        after = records[-1].position
