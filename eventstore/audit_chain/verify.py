"""Verification: recompute the chain from the stored records and check every signed checkpoint.

It reads only the event, seal and checkpoint tables (no keys, no read tables), so it runs on a
copy of the database, offline. It reports the first position where the record, the order or
the seal is wrong, or where the chain no longer matches a signed checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from eventstore.audit_chain.records import GENESIS, StoredRecord, iter_records, next_seal
from eventstore.audit_chain.signing import checkpoint_message, is_valid
from eventstore.audit_chain.tables import audit_checkpoints, audit_seals
from eventstore.database import Database


@dataclass
class ChainReport:
    ok: bool = True
    verified_through_position: int = 0
    head_hash: str | None = None
    first_bad_position: int | None = None
    reason: str | None = None
    events_verified: int = 0
    checkpoints_verified: int = 0
    last_signed_position: int | None = None
    unsealed_events: int = 0
    untrusted_keys: list[str] = field(default_factory=list)


class _Tampered(Exception):
    def __init__(self, position: int, reason: str) -> None:
        super().__init__(reason)
        self.position, self.reason = position, reason


def verify_chain(
    engine: Engine, database: Database, trusted_keys: frozenset[bytes] | None = None
) -> ChainReport:
    """``trusted_keys``: the public keys checkpoints must be signed with. ``None`` trusts the keys
    stored beside the checkpoints (and lists them in ``untrusted_keys``: pass the published key
    to rule out a checkpoint forged by whoever can write to the database)."""
    report = ChainReport()
    with engine.connect() as conn:
        try:
            _walk(conn, database, trusted_keys, report)
        except _Tampered as bad:
            report.ok, report.first_bad_position, report.reason = False, bad.position, bad.reason
    return report


def _walk(
    conn: Connection, database: Database, trusted: frozenset[bytes] | None, report: ChainReport
) -> None:
    checkpoints = list(conn.execute(sa.select(audit_checkpoints).order_by(audit_checkpoints.c.position)))
    records, seals = iter_records(conn, database, release=True), _iter_seals(conn)
    record, previous, signed = next(records, None), GENESIS, 0
    for seal in seals:
        position = seal.position
        if record is None or record.position > position:
            raise _Tampered(position, "a sealed event is missing from the store")
        if record.position < position:
            raise _Tampered(record.position, "a stored event is not in the chain (inserted or moved)")
        _check_link(record, seal, previous)
        previous = seal.seal
        while signed < len(checkpoints) and checkpoints[signed].position <= position:
            _check_checkpoint(checkpoints[signed], position, previous, trusted, report)
            signed += 1
            report.checkpoints_verified, report.last_signed_position = signed, position
        report.events_verified += 1
        report.verified_through_position, report.head_hash = position, previous.hex()
        record = next(records, None)
    if signed < len(checkpoints):
        raise _Tampered(
            report.verified_through_position + 1,
            f"the chain ends at {report.verified_through_position} but a checkpoint was signed at "
            f"{checkpoints[signed].position}: sealed events were removed",
        )
    report.unsealed_events = (0 if record is None else 1) + sum(1 for _ in records)


def _check_link(record: StoredRecord, seal: sa.Row, previous: bytes) -> None:
    digest = record.digest()
    if digest != seal.record_digest:
        raise _Tampered(record.position, "the stored event differs from the one sealed (changed or swapped)")
    if seal.seal != next_seal(previous, digest):
        raise _Tampered(
            record.position, "the seal does not follow from the previous one (seal changed or removed)"
        )


def _check_checkpoint(
    checkpoint: sa.Row, position: int, head: bytes, trusted: frozenset[bytes] | None, report: ChainReport
) -> None:
    if checkpoint.position != position:
        raise _Tampered(checkpoint.position, "a checkpoint was signed at a position the chain no longer has")
    message = checkpoint_message(checkpoint.position, checkpoint.head_hash, checkpoint.signed_at)
    if trusted is not None and checkpoint.public_key not in trusted:
        raise _Tampered(position, f"checkpoint signed with an unknown key {checkpoint.key_id}")
    if trusted is None and checkpoint.key_id not in report.untrusted_keys:
        report.untrusted_keys.append(checkpoint.key_id)
    if not is_valid(checkpoint.public_key, checkpoint.signature, message):
        raise _Tampered(position, "a checkpoint's signature is invalid")
    if checkpoint.head_hash != head:
        since = report.last_signed_position or 0
        raise _Tampered(
            position,
            f"the chain was rewritten after position {since}: it no longer matches the checkpoint here",
        )


def _iter_seals(conn: Connection, batch: int = 2000) -> Iterator[sa.Row]:
    after = 0
    while rows := list(
        conn.execute(
            sa.select(audit_seals)
            .where(audit_seals.c.position > after)
            .order_by(audit_seals.c.position)
            .limit(batch)
        )
    ):
        conn.rollback()  # no read transaction held across the walk (SQLite could not empty its WAL)
        yield from rows
        after = rows[-1].position
