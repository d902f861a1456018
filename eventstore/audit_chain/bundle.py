"""Export bundles (NDJSON) that can be verified on their own, with only the public key.

    {"type": "header", "format": "ledgerline-audit-export/1", "filters": {...}, "exported_at": ...,
     "checkpoint": {...the latest signed checkpoint, or null...}}
    {"type": "entry", ...the audit entry..., "hash": seal, "prev_hash": ..., "record_digest": ...}
    ...
    {"type": "signature", "entries": n, "bundle_sha256": ..., "chain_head": {...},
     "signed_at": ..., "key_id": ..., "public_key": ..., "signature": ...}

Each entry carries its place in the chain (``hash`` = SHA-256(prev_hash | record_digest)), which
``ledgerline audit verify`` can match against the database, and an entry at the checkpoint's
position must carry the checkpoint's signed head hash. The closing line signs the SHA-256 of
every line before it, so no entry can be changed, dropped or added without the signature failing.
Completeness of the whole log is proven by ``audit verify`` on the database, not by a bundle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def next_seal(previous: bytes, digest: bytes) -> bytes:  # TODO(tree): bundles carry inclusion proofs
    return hashlib.sha256(previous + digest).digest()


from eventstore.audit_chain.signing import Signer, checkpoint_message, is_valid, key_id, utc

FORMAT = "ledgerline-audit-export/1"


def _bundle_message(bundle_sha256: str, entries: int, signed_at: str) -> bytes:
    return f"{FORMAT}\n{bundle_sha256}\n{entries}\n{signed_at}".encode()


def _line(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode() + b"\n"


class BundleWriter:
    """Turns entries into bundle lines, hashing every byte it hands out."""

    def __init__(
        self, signer: Signer, filters: Mapping[str, Any], checkpoint: Mapping[str, Any] | None
    ) -> None:
        self._signer = signer
        self._checkpoint = checkpoint
        self._digest = hashlib.sha256()
        self._filters = dict(filters)
        self._entries = 0
        self._head: dict[str, Any] | None = None

    def _out(self, line: bytes) -> bytes:
        self._digest.update(line)
        return line

    def header(self) -> bytes:
        exported_at = datetime.now(UTC).isoformat()
        return self._out(
            _line(
                {
                    "type": "header",
                    "format": FORMAT,
                    "filters": self._filters,
                    "exported_at": exported_at,
                    "checkpoint": self._checkpoint,
                }
            )
        )

    def entry(self, entry: Mapping[str, Any]) -> bytes:
        self._entries += 1
        if entry.get("hash"):
            self._head = {"position": entry["position"], "hash": entry["hash"]}
        return self._out(_line({"type": "entry", **entry}))

    def signature(self) -> bytes:
        bundle_sha256, signed_at = self._digest.hexdigest(), datetime.now(UTC).isoformat()
        signature = self._signer.sign(_bundle_message(bundle_sha256, self._entries, signed_at))
        return _line(
            {
                "type": "signature",
                "entries": self._entries,
                "bundle_sha256": bundle_sha256,
                "chain_head": self._head,
                "signed_at": signed_at,
                "algorithm": "Ed25519",
                "key_id": self._signer.key_id,
                "public_key": self._signer.public_key.hex(),
                "signature": signature.hex(),
            }
        )


def checkpoint_fields(row: Any) -> dict[str, Any]:
    """A stored checkpoint as it travels in bundles and API answers."""
    return {
        "position": row.position,
        "head_hash": row.head_hash.hex(),
        "signed_at": utc(row.signed_at).isoformat(),
        "key_id": row.key_id,
        "public_key": row.public_key.hex(),
        "signature": row.signature.hex(),
    }


@dataclass
class BundleReport:
    ok: bool = True
    entries: int = 0
    unsealed_entries: int = 0
    first_bad_line: int | None = None
    reason: str | None = None
    key_id: str | None = None
    chain_head: dict[str, Any] | None = None


class _Bad(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def verify_bundle(lines: Iterable[bytes], trusted_keys: frozenset[bytes]) -> BundleReport:
    """Check a bundle line by line (constant memory). ``trusted_keys``: the published public
    keys the auditor holds. The key a bundle names is never trusted on its own word: whoever
    changed an entry could re-sign it with a key of their own, so no trusted key, no valid bundle."""
    report = BundleReport()
    try:
        _check(lines, trusted_keys, report)
    except _Bad as bad:
        report.ok, report.first_bad_line, report.reason = False, bad.line, bad.reason
    return report


def _check(lines: Iterable[bytes], trusted: frozenset[bytes], report: BundleReport) -> None:
    digest, number, header, closing = hashlib.sha256(), 0, None, None
    previous: dict[str, Any] | None = None
    for number, raw in enumerate(lines, start=1):
        if closing is not None:
            raise _Bad(number, "lines after the signature")
        try:
            item = json.loads(raw)
        except ValueError:
            raise _Bad(number, "not a JSON line") from None
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "signature":
            closing = item
            continue
        digest.update(raw)
        if number == 1:
            if kind != "header" or item.get("format") != FORMAT:
                raise _Bad(1, f"not a {FORMAT} bundle")
            header = item
            if item.get("checkpoint"):
                _check_checkpoint(1, item["checkpoint"], trusted)
        elif kind == "entry":
            _check_entry(number, item, previous, report)
            signed = (header or {}).get("checkpoint") or {}
            if item.get("position") == signed.get("position") and item.get("hash") != signed.get("head_hash"):
                raise _Bad(number, "the entry's hash differs from the one signed in the checkpoint")
            previous = item
        else:
            raise _Bad(number, f"unexpected line type {kind!r}")
    if closing is None:
        raise _Bad(number + 1, "the signature line is missing (truncated bundle)")
    _check_signature(number, closing, digest.hexdigest(), trusted, report)


def _check_entry(
    number: int, entry: dict[str, Any], previous: dict[str, Any] | None, report: BundleReport
) -> None:
    report.entries += 1
    if previous is not None and entry.get("position", 0) <= previous.get("position", 0):
        raise _Bad(number, "entries are not in position order")
    if not entry.get("hash"):
        report.unsealed_entries += 1
        return
    try:
        prev_hash, record_digest, seal = (
            bytes.fromhex(entry[k]) for k in ("prev_hash", "record_digest", "hash")
        )
    except (KeyError, TypeError, ValueError):
        raise _Bad(number, "the entry's chain fields are missing or malformed") from None
    if next_seal(prev_hash, record_digest) != seal:
        raise _Bad(number, "the entry's hash does not follow from its prev_hash and record_digest")
    report.chain_head = {"position": entry["position"], "hash": entry["hash"]}


def _check_signature(
    number: int,
    closing: dict[str, Any],
    bundle_sha256: str,
    trusted: frozenset[bytes],
    report: BundleReport,
) -> None:
    try:
        public_key = bytes.fromhex(closing["public_key"])
        signature = bytes.fromhex(closing["signature"])
        message = _bundle_message(closing["bundle_sha256"], closing["entries"], closing["signed_at"])
    except (KeyError, TypeError, ValueError):
        raise _Bad(number, "the signature line is malformed") from None
    report.key_id = key_id(public_key)
    if public_key not in trusted:
        raise _Bad(number, f"signed with an unknown key {report.key_id}")
    if not is_valid(public_key, signature, message):
        raise _Bad(number, "the bundle's signature is invalid")
    if closing["bundle_sha256"] != bundle_sha256 or closing["entries"] != report.entries:
        raise _Bad(number, "the bundle was changed after it was signed")


def _check_checkpoint(number: int, checkpoint: dict[str, Any], trusted: frozenset[bytes]) -> None:
    try:
        public_key = bytes.fromhex(checkpoint["public_key"])
        message = checkpoint_message(
            checkpoint["position"],
            bytes.fromhex(checkpoint["head_hash"]),
            datetime.fromisoformat(checkpoint["signed_at"]),
        )
        valid = is_valid(public_key, bytes.fromhex(checkpoint["signature"]), message)
    except (KeyError, TypeError, ValueError):
        raise _Bad(number, "the checkpoint is malformed") from None
    if public_key not in trusted:
        raise _Bad(number, f"the checkpoint is signed with an unknown key {key_id(public_key)}")
    if not valid:
        raise _Bad(number, "the checkpoint's signature is invalid")
