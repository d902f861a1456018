"""Export bundles (NDJSON, ``ledgerline-audit-export/2``): every entry carries the stored record it
comes from and an RFC 9162 inclusion proof into the tree of the bundle's signed checkpoint, so an
auditor checks a bundle offline, with no database, against a key they already trust.

    {"type": "header", "format": "ledgerline-audit-export/2", "origin": "<the log's origin>",
     "filters": {...}, "exported_at": "<RFC 3339>", "checkpoint": "<C2SP signed checkpoint note>"}
    {"type": "entry", ...the audit entry as GET /audit-logs/{position} shows it ("hash": leaf hash,
     hex)..., "leaf_index": position - 1, "leaf_hash": "<base64>", "record": "<base64 of the stored
     record, docs/audit-log-format.md>", "inclusion_path": ["<base64>", ...]}
    ...
    {"type": "signature", "entries": n, "bundle_sha256": "<hex>", "signed_at": "<RFC 3339>",
     "note": "<C2SP signed note>"}

Entries are in position order, each at most the checkpoint's tree size. The closing note's text is

    ledgerline-audit-export/2 \\n origin \\n tree size \\n entries \\n bundle_sha256 \\n signed_at \\n

where ``bundle_sha256`` is the SHA-256 of every byte before the closing line. It is signed, like
the checkpoint, with the log's checkpoint key (``signed-note``, Ed25519, key name = origin): one
key anchors the whole bundle, an auditor needs only the verifier key they hold for the log's
checkpoints (or its raw Ed25519 public key: ``ledgerline audit public-key`` prints the same key),
and retired keys keep older bundles verifying. The bundle names no public key of its own.

What ``verify_bundle`` checks, in one pass and constant memory (the first failure is reported
with its line number):

1. the header: this format, an origin, and a checkpoint note that a *trusted* key signed (a
   ``VerifierKey`` by name and key ID, or a raw Ed25519 key under the name its signature line
   gives), whose origin is the header's;
2. every entry: ``position`` an integer above the previous entry's; ``leaf_index`` = position - 1;
   ``record`` decodes to exactly one event record (a void leaf is not an entry) whose position,
   aggregate id and aggregate version are the entry's ``position``, ``resource_id`` and
   ``resource_version``; SHA-256(0x00 || record) is ``leaf_hash`` and ``hash``; the
   ``inclusion_path`` leads from that leaf at that index to the checkpoint's root in a tree of the
   checkpoint's size (RFC 9162 2.1.3.2);
3. the closing line: present, last, ``entries`` is the number of entries, ``bundle_sha256`` is
   the digest of every line before it, and its note is signed by a trusted key over the text above.

The record proves the entry's identity (which event, of which aggregate, at which version) is a
leaf of the signed tree. The other fields (action, time, actor, credential, addresses, ids,
status, changes) are not read from the record: its payload is the domain's serialisation with
personal data encrypted under per-subject keys (unreadable once erased). They are vouched for by
the closing signature, and the export re-derived each of them from its stored event before
writing it (``projections.audit_log.evidence``). Completeness of the whole log is what
``ledgerline audit verify`` proves on the database, not what a (filtered) bundle proves.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard
from uuid import UUID

from eventstore.audit_chain.merkle import leaf_hash, root_from_inclusion_proof
from eventstore.audit_chain.note import (
    Checkpoint,
    NoteError,
    NoteSigner,
    VerifierKey,
    open_note,
    parse_note,
    sign_note,
)
from eventstore.audit_chain.records import parse_record

FORMAT = "ledgerline-audit-export/2"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signature_text(origin: str, tree_size: int, entries: int, bundle_sha256: str, signed_at: str) -> str:
    """The text the closing line's note signs."""
    return f"{FORMAT}\n{origin}\n{tree_size}\n{entries}\n{bundle_sha256}\n{signed_at}\n"


def _line(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode() + b"\n"


class BundleWriter:
    """Turns entries (with their proofs) into bundle lines, hashing every byte it hands out."""

    def __init__(self, signer: NoteSigner, filters: Mapping[str, Any], checkpoint: str) -> None:
        """``checkpoint``: the signed note of the tree every entry's proof leads to (of the
        log ``signer`` signs for)."""
        parsed = Checkpoint.parse(parse_note(checkpoint).text)
        self._signer = signer
        self._checkpoint = checkpoint
        self._origin, self._size = parsed.origin, parsed.size
        self._digest = hashlib.sha256()
        self._filters = dict(filters)
        self._entries = 0

    def _out(self, line: bytes) -> bytes:
        self._digest.update(line)
        return line

    def header(self) -> bytes:
        return self._out(
            _line(
                {
                    "type": "header",
                    "format": FORMAT,
                    "origin": self._origin,
                    "filters": self._filters,
                    "exported_at": datetime.now(UTC).isoformat(),
                    "checkpoint": self._checkpoint,
                }
            )
        )

    def entry(self, entry: Mapping[str, Any]) -> bytes:
        """``entry``: the presented audit entry plus ``leaf_index``, ``leaf_hash``, ``record`` and
        ``inclusion_path`` (already base64)."""
        self._entries += 1
        return self._out(_line({"type": "entry", **entry}))

    def signature(self) -> bytes:
        bundle_sha256, signed_at = self._digest.hexdigest(), datetime.now(UTC).isoformat()
        text = signature_text(self._origin, self._size, self._entries, bundle_sha256, signed_at)
        return _line(
            {
                "type": "signature",
                "entries": self._entries,
                "bundle_sha256": bundle_sha256,
                "signed_at": signed_at,
                "note": sign_note(text, [self._signer]),
            }
        )


# ---- verifying --------------------------------------------------------------------------------


TrustedKey = VerifierKey | bytes
"""A signed-note verifier key, or a raw 32-byte Ed25519 public key (trusted under any key name)."""


@dataclass
class BundleReport:
    ok: bool = True
    entries: int = 0
    first_bad_line: int | None = None
    reason: str | None = None
    origin: str | None = None
    tree_size: int | None = None  # of the checkpoint the proofs lead to
    root_hash: str | None = None  # its root, base64 as in the note
    checkpoint_key: str | None = None  # the trusted key that signed the checkpoint (vkey)
    signature_key: str | None = None  # the trusted key that signed the closing line (vkey)
    first_position: int | None = None
    last_position: int | None = None


class _Bad(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


class _Trust:
    """The auditor's keys. A note's signature lines name a key (name, key ID); a raw key is tried
    under each name the note gives, which is what trusting a bare key means."""

    def __init__(self, trusted: Iterable[TrustedKey]) -> None:
        self._keys: list[VerifierKey] = []
        self._raw: list[bytes] = []
        for key in trusted:
            if isinstance(key, VerifierKey):
                self._keys.append(key)
            elif isinstance(key, bytes | bytearray) and len(key) == 32:
                self._raw.append(bytes(key))
            else:
                raise ValueError("a trusted key is a VerifierKey or a 32-byte Ed25519 public key")

    def __bool__(self) -> bool:
        return bool(self._keys or self._raw)

    def open(self, note: str) -> tuple[str, VerifierKey]:
        """The note's text and the trusted key that verified it (else a ``NoteError``)."""
        known = list(self._keys)
        names = {signature.name for signature in parse_note(note).signatures}
        known.extend(VerifierKey(name, raw) for name in sorted(names) for raw in self._raw)
        opened = open_note(note, known)
        first = opened.verified[0]
        return opened.text, next(k for k in known if (k.name, k.key_id) == (first.name, first.key_id))


def verify_bundle(lines: Iterable[bytes], trusted: Iterable[TrustedKey]) -> BundleReport:
    """Check a bundle line by line, in constant memory (see the module's list). ``trusted``: the
    keys the auditor holds. Nothing in the bundle is trusted on its own word: whoever changed an
    entry could re-sign it with a key of their own, so no trusted key, no valid bundle."""
    report = BundleReport()
    try:
        trust = _Trust(trusted)
        if not trust:
            raise _Bad(1, "no trusted key was given")
        _Checker(trust, report).run(lines)
    except _Bad as bad:
        report.ok, report.first_bad_line, report.reason = False, bad.line, bad.reason
    return report


@dataclass
class _Anchor:
    origin: str
    size: int
    root: bytes


class _Checker:
    def __init__(self, trust: _Trust, report: BundleReport) -> None:
        self.trust, self.report = trust, report
        self.anchor: _Anchor | None = None
        self.previous = 0

    def run(self, lines: Iterable[bytes]) -> None:
        digest, number, closing = hashlib.sha256(), 0, None
        for number, raw in enumerate(lines, start=1):
            if closing is not None:
                raise _Bad(number, "lines after the signature")
            item = _json(number, raw)
            kind = item.get("type")
            if number == 1:
                self.header(item)
            elif kind == "entry":
                self.entry(number, item)
            elif kind == "signature":
                closing = item
                continue
            else:
                raise _Bad(number, f"unexpected line type {kind!r}")
            digest.update(raw)
        if number == 0:
            raise _Bad(1, "the bundle is empty")
        if closing is None:
            raise _Bad(number + 1, "the signature line is missing (truncated bundle)")
        self.signature(number, closing, digest.hexdigest())

    def header(self, item: dict[str, Any]) -> None:
        if item.get("type") != "header" or item.get("format") != FORMAT:
            raise _Bad(1, f"not a {FORMAT} bundle")
        origin, note = item.get("origin"), item.get("checkpoint")
        if not isinstance(origin, str) or not isinstance(note, str):
            raise _Bad(1, "the header lacks the origin or the checkpoint note")
        try:
            text, key = self.trust.open(note)
            checkpoint = Checkpoint.parse(text)
        except NoteError as error:
            raise _Bad(1, f"the checkpoint is not signed by a trusted key: {error}") from None
        if checkpoint.origin != origin:
            raise _Bad(1, f"the checkpoint is of {checkpoint.origin!r}, not of the header's {origin!r}")
        self.anchor = _Anchor(origin, checkpoint.size, checkpoint.root_hash)
        self.report.origin, self.report.tree_size = origin, checkpoint.size
        self.report.root_hash, self.report.checkpoint_key = b64(checkpoint.root_hash), key.encode()

    def entry(self, number: int, entry: dict[str, Any]) -> None:
        assert self.anchor is not None, "the header comes first"
        position = entry.get("position")
        if not _is_int(position) or position < 1:
            raise _Bad(number, "the entry's position is missing or not a positive integer")
        if position <= self.previous:
            raise _Bad(number, "entries are not in position order")
        if entry.get("leaf_index") != position - 1 or not _is_int(entry.get("leaf_index")):
            raise _Bad(number, "the entry's leaf_index is not its position - 1")
        record_bytes = _unb64(number, entry.get("record"), "record")
        leaf = _unb64(number, entry.get("leaf_hash"), "leaf_hash")
        path = entry.get("inclusion_path")
        if not isinstance(path, list):
            raise _Bad(number, "the entry's inclusion_path is not a list")
        proof = [_unb64(number, node, "inclusion_path") for node in path]
        try:
            record = parse_record(record_bytes)
        except ValueError as error:
            raise _Bad(number, f"the entry's record is not an event record: {error}") from None
        if record.position != position:
            raise _Bad(number, "the record is of another position than the entry")
        aggregate = _aggregate_id(record.originator_id)
        if aggregate is None or aggregate != _uuid(entry.get("resource_id")):
            raise _Bad(number, "the record is of another aggregate than the entry's resource_id")
        version = entry.get("resource_version")
        if not _is_int(version) or record.originator_version != version:
            raise _Bad(number, "the record's version is not the entry's resource_version")
        if leaf_hash(record_bytes) != leaf or entry.get("hash") != leaf.hex():
            raise _Bad(number, "the record does not hash to the entry's leaf_hash and hash")
        root = root_from_inclusion_proof(position - 1, self.anchor.size, leaf, proof)
        if root is None or root != self.anchor.root:
            raise _Bad(number, "the inclusion path does not lead to the checkpoint's root")
        self.previous = position
        self.report.entries += 1
        if self.report.first_position is None:
            self.report.first_position = position
        self.report.last_position = position

    def signature(self, number: int, closing: dict[str, Any], bundle_sha256: str) -> None:
        assert self.anchor is not None, "the header comes first"
        line = number
        entries, claimed, signed_at, note = (
            closing.get(k) for k in ("entries", "bundle_sha256", "signed_at", "note")
        )
        if not (_is_int(entries) and isinstance(claimed, str) and isinstance(signed_at, str)):
            raise _Bad(line, "the signature line is malformed")
        if not isinstance(note, str):
            raise _Bad(line, "the signature line has no signed note")
        try:
            text, key = self.trust.open(note)
        except NoteError as error:
            raise _Bad(line, f"the bundle is not signed by a trusted key: {error}") from None
        expected = signature_text(self.anchor.origin, self.anchor.size, entries, claimed, signed_at)
        if text != expected:
            raise _Bad(line, "the signed note does not sign this signature line")
        if claimed != bundle_sha256 or entries != self.report.entries:
            raise _Bad(line, "the bundle was changed after it was signed")
        self.report.signature_key = key.encode()


def _json(number: int, raw: bytes) -> dict[str, Any]:
    try:
        item = json.loads(raw)
    except ValueError:
        raise _Bad(number, "not a JSON line") from None
    if not isinstance(item, dict):
        raise _Bad(number, "not a JSON object")
    return item


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _unb64(number: int, value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise _Bad(number, f"the entry's {name} is missing")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _Bad(number, f"the entry's {name} is not base64") from None


def _aggregate_id(stored: bytes) -> UUID | None:
    """A stored aggregate id: PostgreSQL's 16 bytes, SQLite's 32 hex characters."""
    try:
        return UUID(bytes=stored) if len(stored) == 16 else UUID(hex=stored.decode("ascii"))
    except ValueError:
        return None


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def trusted_keys(values: Sequence[str]) -> list[TrustedKey]:
    """Keys as an auditor passes them: a verifier key (``name+hex key ID+base64``) or a raw
    Ed25519 public key in hex (64 characters). A ``ValueError`` names the first bad one."""
    keys: list[TrustedKey] = []
    for value in values:
        if "+" in value:
            keys.append(VerifierKey.parse(value))
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"{value!r} is neither a verifier key nor a 64-hex Ed25519 public key")
        keys.append(raw)
    return keys
