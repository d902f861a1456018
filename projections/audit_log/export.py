"""Audit exports, streamed in position order a keyset page at a time (constant memory):

- ``ndjson``: a signed bundle (see eventstore/audit_chain/bundle.py) that
  ``ledgerline audit verify-export`` checks with nothing but the public key;
- ``csv``: the same entries for spreadsheets, one row each (not signed).

Both go through the list's filter (``AuditFilter``) and the one entry presenter. Every page is
checked against the stored events first (``AuditEvidence``): a row that its event contradicts
ends the export with ``ForgedEntryError`` before it is written, so a bundle never signs it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from eventstore.audit_chain.bundle import BundleWriter, checkpoint_fields
from eventstore.audit_chain.signing import Signer
from projections.audit_log.evidence import AuditEvidence, ForgedEntryError
from projections.audit_log.presenter import ENTRY_FIELDS, present_entries
from projections.audit_log.queries import AuditFilter, audit_log, select_entries

Format = Literal["ndjson", "csv"]
MEDIA_TYPES: dict[str, str] = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_FIELDS = (*ENTRY_FIELDS, "prev_hash", "record_digest")
BATCH = 1000
FORMULA_STARTS = frozenset("=+-@\t\r")


def export(
    engine: Engine, evidence: AuditEvidence, signer: Signer, audit: AuditFilter, fmt: Format
) -> Iterator[bytes]:
    """The export's bytes, produced as they are read (a generator: nothing runs until iterated,
    and closing it early releases the connection)."""
    ndjson = fmt == "ndjson"
    lines = _ndjson(engine, evidence, signer, audit) if ndjson else _csv(engine, evidence, audit)
    return _failing_loudly(_chunks(lines))


def _failing_loudly(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Litestar ends a sync stream quietly at a ValueError: make any failure abort the response."""
    try:
        yield from chunks
    except ValueError as error:
        raise RuntimeError("the export failed") from error


def _chunks(lines: Iterator[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
    """Lines gathered into chunks of about ``size`` bytes (fewer writes, fewer thread hops)."""
    chunk: list[bytes] = []
    length = 0
    for line in lines:
        chunk.append(line)
        length += len(line)
        if length >= size:
            yield b"".join(chunk)
            chunk, length = [], 0
    if chunk:
        yield b"".join(chunk)


def _entries(engine: Engine, evidence: AuditEvidence, audit: AuditFilter) -> Iterator[dict[str, Any]]:
    while True:  # a connection per page: none is held while the client reads (or goes away)
        query = select_entries(audit, order="asc", limit=BATCH)
        with engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            forged = evidence.forged_in(conn, rows)
        if forged:
            raise ForgedEntryError(forged[0])
        entries = present_entries([dict(row) for row in rows], evidence.sealer)
        yield from entries
        if len(rows) < BATCH:
            return
        audit = audit.after(rows[-1]["position"], "asc")


def _ndjson(engine: Engine, evidence: AuditEvidence, signer: Signer, audit: AuditFilter) -> Iterator[bytes]:
    checkpoint = None  # TODO(tree): the bundle's signed checkpoint and each entry's inclusion proof
    filters = {name.rstrip("_"): value for name, value in asdict(audit).items() if value is not None}
    bundle = BundleWriter(
        signer, _plain(filters), None if checkpoint is None else checkpoint_fields(checkpoint)
    )
    yield bundle.header()
    for entry in _entries(engine, evidence, audit):
        yield bundle.entry(_plain(entry))
    yield bundle.signature()


def _csv(engine: Engine, evidence: AuditEvidence, audit: AuditFilter) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for entry in _entries(engine, evidence, audit):
        yield _taken(buffer)
        plain = _plain(entry)
        plain["changes"] = json.dumps(plain["changes"], separators=(",", ":"))
        writer.writerow({name: _inert(value) for name, value in plain.items()})
    yield _taken(buffer)


def _inert(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula (user agents and request ids come from
    clients): text starting with = + - @ or a control character gets a leading quote."""
    return "'" + value if isinstance(value, str) and value[:1] in FORMULA_STARTS else value


def _taken(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes in RFC 3339, UUIDs as strings."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value
