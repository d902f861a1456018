"""Audit exports, streamed in position order a keyset page at a time (constant memory):

- ``ndjson``: a signed bundle (see eventstore/audit_chain/bundle.py) whose entries each carry
  their stored record and an RFC 9162 inclusion proof to the bundle's checkpoint, which
  ``ledgerline audit verify-export`` checks with nothing but a key the auditor trusts;
- ``csv``: the same entries for spreadsheets, one row each (not signed; ``hash`` is the leaf hash).

Both take the tree as it stands when the export starts (the bundle: a checkpoint covering every
event committed before it, signed now if the latest does not) and hold only entries within it.
Both go through the list's filter (``AuditFilter``) and the one entry presenter. Every page is
checked against the stored events first (``AuditEvidence``): a row that its event contradicts
ends the export with ``ForgedEntryError`` before it is written, so a bundle never signs it; an
event that is not the leaf its tree holds ends it with ``UnprovableEntryError``. A page's records
and the tree nodes of all its proofs are read in a few queries, not one per entry.
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
from sqlalchemy.engine import Connection, Engine

from eventstore.audit_chain.bundle import BundleWriter, b64
from eventstore.audit_chain.checkpoints import CheckpointKeys, checkpoint_now
from eventstore.audit_chain.merkle import NodeId, leaf_hash, node_hash, subtree_nodes
from eventstore.audit_chain.note import NoteError, open_checkpoint
from eventstore.audit_chain.records import read_records_at
from eventstore.audit_chain.tree import root_at, stored_size, tree_nodes
from projections.audit_log.evidence import AuditEvidence, ForgedEntryError
from projections.audit_log.presenter import ENTRY_FIELDS, present_entries
from projections.audit_log.queries import AuditFilter, select_entries

Format = Literal["ndjson", "csv"]
MEDIA_TYPES: dict[str, str] = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_FIELDS = ENTRY_FIELDS
BATCH = 1000
MAX_PARAMETERS = 8000  # per node query (SQLite allows 32766, PostgreSQL 65535)
FORMULA_STARTS = frozenset("=+-@\t\r")


def export(
    engine: Engine, evidence: AuditEvidence, keys: CheckpointKeys, audit: AuditFilter, fmt: Format
) -> Iterator[bytes]:
    """The export's bytes, produced as they are read (a generator: nothing runs until iterated,
    and closing it early releases the connection). ``keys`` sign the bundle's checkpoint and its
    closing line."""
    ndjson = fmt == "ndjson"
    lines = _ndjson(engine, evidence, keys, audit) if ndjson else _csv(engine, evidence, audit)
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


def _entries(
    engine: Engine, evidence: AuditEvidence, audit: AuditFilter, proofs_to: int | None = None
) -> Iterator[dict[str, Any]]:
    """Entries matching ``audit`` (JSON-ready), a page at a time, each page checked against its
    stored events; with ``proofs_to`` (a tree size, which ``audit`` must not pass) each entry also
    carries its record and its inclusion proof into the tree of that size."""
    while True:  # a connection per page: none is held while the client reads (or goes away)
        query = select_entries(audit, order="asc", limit=BATCH)
        with engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            forged = evidence.forged_in(conn, rows)
            if forged:
                raise ForgedEntryError(forged[0])
            proven = None if proofs_to is None else _proofs(conn, rows, proofs_to)
        entries = [_plain(entry) for entry in present_entries([dict(row) for row in rows], evidence.sealer)]
        if proven is not None:
            for entry, proof in zip(entries, proven, strict=True):
                entry.update(proof)  # base64 text already
        yield from entries
        if len(rows) < BATCH:
            return
        audit = audit.after(rows[-1]["position"], "asc")


class UnprovableError(RuntimeError):
    """The stored tree cannot prove what the export holds: the store was changed."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem} (run `ledgerline audit verify`)")


class UnprovableEntryError(UnprovableError):
    """An entry whose stored event is not the leaf the tree holds for it (or has no event)."""

    def __init__(self, position: int) -> None:
        super().__init__(
            f"the stored event at position {position} is not the leaf the log's tree holds for it"
        )
        self.position = position


Element = tuple[int, int]
"""One element of an inclusion path: ``(level, index)`` names a stored perfect subtree;
``(RIGHT, start)`` the fold of the tree's right border from leaf ``start`` on (MTH(D[start:size]),
at most one per path)."""
RIGHT = -1


def path_elements(index: int, size: int) -> list[Element]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1, deepest first, as ``merkle.inclusion_proof_nodes``
    gives it (tests hold the two equal), in a few integer operations: below the first ancestor of
    the leaf that the tree's size cuts, each element is the sibling subtree; at that ancestor the
    right border after it, if any; above it, the left sibling at each level where the index has a
    one bit (the right ones hold no leaf)."""
    elements: list[Element] = []
    level = 0
    while ((index >> (level + 1)) + 1) << (level + 1) <= size:  # the parent is a whole subtree
        elements.append((level, (index >> level) ^ 1))
        level += 1
    start = ((index >> level) + 1) << level
    if start < size:
        elements.append((RIGHT, start))
    elements.extend(
        (upper, (index >> upper) ^ 1) for upper in range(level + 1, index.bit_length()) if index >> upper & 1
    )
    return elements


def _proofs(conn: Connection, rows: list[Any], size: int) -> list[dict[str, Any]]:
    """For each row (an audit entry, in position order): its leaf, its stored record and its
    inclusion path in the tree of ``size`` leaves. The page's records are read in one query and
    every node its proofs need in one (or a few, for a page scattered over a large log)."""
    positions = [row["position"] for row in rows]
    records = {record.position: record for record in read_records_at(conn, None, positions)}
    paths = [path_elements(position - 1, size) for position in positions]
    hashes = _proof_hashes(conn, paths, size)  # base64, shared: a level-l node serves 2**l leaves
    proofs = []
    for row, position, path in zip(rows, positions, paths, strict=True):
        record, leaf = records.get(position), row["leaf_hash"]
        data = None if record is None else record.leaf()
        if data is None or leaf is None or leaf_hash(data) != bytes(leaf):
            raise UnprovableEntryError(position)
        proofs.append(
            {
                "leaf_index": position - 1,
                "leaf_hash": b64(bytes(leaf)),
                "record": b64(data),
                "inclusion_path": [hashes[element] for element in path],
            }
        )
    return proofs


def _proof_hashes(conn: Connection, paths: list[list[Element]], size: int) -> dict[Element, str]:
    """The base64 hash of every element of ``paths`` (in the tree of ``size`` leaves), from the
    stored nodes: per level the wanted indexes are read as one range when they are dense (a page
    of consecutive positions: about two nodes per leaf in all), else as lists, and the conditions
    go out in as few queries as the bound on parameters allows."""
    borders = {start for path in paths for level, start in path if level == RIGHT}
    folded = {start: subtree_nodes(start, size) for start in borders}
    wanted: dict[int, set[int]] = {}
    for element in {element for path in paths for element in path if element[0] != RIGHT}:
        wanted.setdefault(element[0], set()).add(element[1])
    for ids in folded.values():
        for node in ids:
            wanted.setdefault(node.level, set()).add(node.index)
    stored = _stored_nodes(conn, wanted)
    hashes = {(level, index): b64(stored[level, index]) for level, found in wanted.items() for index in found}
    for start, ids in folded.items():
        parts = [stored[node.level, node.index] for node in ids]
        root = parts[-1]
        for left in reversed(parts[:-1]):  # MTH of consecutive perfect subtrees, right to left
            root = node_hash(left, root)
        hashes[RIGHT, start] = b64(root)
    return hashes


def _stored_nodes(conn: Connection, wanted: dict[int, set[int]]) -> dict[tuple[int, int], bytes]:
    level, idx = tree_nodes.c.level, tree_nodes.c.idx
    clauses: list[tuple[int, sa.ColumnElement[bool]]] = []  # (parameters, condition)
    for depth, found in sorted(wanted.items()):
        low, high = min(found), max(found)
        if high - low + 1 <= 2 * len(found) + 64:
            clauses.append((3, sa.and_(level == depth, idx.between(low, high))))
            continue
        ordered = sorted(found)
        for start in range(0, len(ordered), MAX_PARAMETERS // 2):
            chunk = ordered[start : start + MAX_PARAMETERS // 2]
            clauses.append((len(chunk) + 1, sa.and_(level == depth, idx.in_(chunk))))
    groups: list[list[sa.ColumnElement[bool]]] = [[]]
    used = 0
    for cost, clause in clauses:
        if groups[-1] and used + cost > MAX_PARAMETERS:
            groups.append([])
            used = 0
        groups[-1].append(clause)
        used += cost
    nodes: dict[tuple[int, int], bytes] = {}
    for group in groups:
        if group:
            for row in conn.execute(sa.select(tree_nodes).where(sa.or_(*group))):
                nodes[row.level, row.idx] = bytes(row.hash)
    for depth, found in wanted.items():
        missing = next((i for i in found if (depth, i) not in nodes), None)
        if missing is not None:
            raise UnprovableError(f"the stored tree lacks node {NodeId(depth, missing)}")
    return nodes


def _anchor(engine: Engine, keys: CheckpointKeys) -> tuple[int, str]:
    """The tree every proof of the bundle leads to: a checkpoint covering every event committed
    before the export, and its note signed by the current key (a stored checkpoint signed before a
    key rotation is signed again for the bundle, not stored: the tree is the same)."""
    checkpoint = checkpoint_now(engine, keys)
    with engine.connect() as conn:
        root = root_at(conn, checkpoint.size)
    if root != checkpoint.root_hash:
        raise UnprovableError(f"the stored tree's root at size {checkpoint.size} is not its checkpoint's")
    try:
        open_checkpoint(checkpoint.note, [keys.signer.verifier_key], origin=keys.origin)
        note = checkpoint.note
    except NoteError:
        note = keys.sign(checkpoint.size, checkpoint.root_hash)
    return checkpoint.size, note


def _ndjson(
    engine: Engine, evidence: AuditEvidence, keys: CheckpointKeys, audit: AuditFilter
) -> Iterator[bytes]:
    size, note = _anchor(engine, keys)
    filters = {name.rstrip("_"): value for name, value in asdict(audit).items() if value is not None}
    bundle = BundleWriter(keys.signer, _plain(filters), note)
    yield bundle.header()
    for entry in _entries(engine, evidence, audit.after(size + 1, "desc"), proofs_to=size):
        yield bundle.entry(entry)
    yield bundle.signature()


def _csv(engine: Engine, evidence: AuditEvidence, audit: AuditFilter) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    with engine.connect() as conn:
        size = stored_size(conn)
    for entry in _entries(engine, evidence, audit.after(size + 1, "desc")):
        yield _taken(buffer)
        entry["changes"] = json.dumps(entry["changes"], separators=(",", ":"))
        writer.writerow({name: _inert(value) for name, value in entry.items()})
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
