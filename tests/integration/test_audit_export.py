"""`ledgerline audit export|verify-export` as an auditor runs them: real processes, both stores, and
bundles whose entries each carry an inclusion proof to the bundle's signed checkpoint, checked
here twice: by `verify-export` against the key the auditor passes, and by an independent RFC 9162
verifier written below from the RFC's definitions (not the production merkle module)."""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

from domain.errors import AuthenticationError
from eventstore.audit_chain.note import NoteSigner
from eventstore.database import Database, writing
from eventstore.personal_data import Sealer
from ledgerline.audit_cli import audit
from ledgerline.bootstrap import Components
from projections.audit_log import export as export_module
from projections.audit_log.evidence import AuditEvidence
from projections.audit_log.export import export
from projections.audit_log.queries import AuditFilter
from tests.conftest import PG_ADMIN_DSN
from tests.integration.helpers import STRONG_PASSWORD, project_all, register, renames_by_an_admin
from tests.integration.merkle_attacks import as_owner, events_sql
from tests.integration.test_cli import LEDGERLINE, TEST_SECRET, run

# ---- an independent verifier (RFC 9162 2.1.1 / 2.1.3, C2SP signed-note) -----------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """MTH(D[0:size]) from leaf ``index`` and PATH(index, D[0:size]), by the recursive definition
    of RFC 9162 2.1.3.1: for n > 1 and k the largest power of two below n, PATH(m, D[n]) is
    PATH(m, D[0:k]) : MTH(D[k:n]) when m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k])."""
    if size == 1:
        assert not path, "a one-leaf tree has an empty path"
        return leaf
    assert path, "the path is too short"
    k = 1 << ((size - 1).bit_length() - 1)
    *below, top = path
    if index < k:
        return sha256(b"\x01" + root_from_path(index, k, leaf, below) + top)
    return sha256(b"\x01" + top + root_from_path(index - k, size - k, leaf, below))


def path_length(index: int, size: int) -> int:
    """The number of hashes in PATH(index, D[0:size]) (RFC 9162 2.1.3.1)."""
    if size == 1:
        return 0
    k = 1 << ((size - 1).bit_length() - 1)
    return 1 + (path_length(index, k) if index < k else path_length(index - k, size - k))


def record_fields(record: bytes) -> tuple[int, int, bytes]:
    """(position, version, aggregate id) of a ``ledgerline-record-v1``."""
    tag = b"ledgerline-record-v1"
    assert record.startswith(tag)
    position, version, id_length = struct.unpack_from(">qqI", record, len(tag))
    start = len(tag) + 20
    return position, version, record[start : start + id_length]


def opened_note(note: str, public_key: bytes) -> str:
    """The text of a C2SP signed note carrying a valid Ed25519 signature by ``public_key``."""
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        assert line.startswith("\u2014 ")
        name, encoded = line[2:].split(" ")
        raw = base64.b64decode(encoded)
        if raw[:4] == sha256(name.encode() + b"\n\x01" + public_key)[:4]:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text.encode())
            return text
    raise AssertionError("no signature by that key")


def independently_verified(lines: list[bytes], public_key: bytes) -> int:
    """Check a bundle without the production verifier; returns the number of entries."""
    header = json.loads(lines[0])
    origin, size, root = opened_note(header["checkpoint"], public_key).splitlines()
    assert origin == header["origin"]
    root_hash, previous = base64.b64decode(root), 0
    for line in lines[1:-1]:
        entry = json.loads(line)
        record = base64.b64decode(entry["record"])
        leaf = sha256(b"\x00" + record)
        position, version, aggregate = record_fields(record)
        assert entry["position"] == position > previous and entry["leaf_index"] == position - 1
        assert entry["resource_version"] == version
        stored = UUID(bytes=aggregate) if len(aggregate) == 16 else UUID(aggregate.decode())
        assert UUID(entry["resource_id"]) == stored
        assert base64.b64decode(entry["leaf_hash"]) == leaf and entry["hash"] == leaf.hex()
        path = [base64.b64decode(node) for node in entry["inclusion_path"]]
        assert root_from_path(position - 1, int(size), leaf, path) == root_hash
        previous = position
    closing = json.loads(lines[-1])
    digest = hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    signed = opened_note(closing["note"], public_key)
    entries = len(lines) - 2
    assert signed == (
        f"ledgerline-audit-export/2\n{origin}\n{size}\n{entries}\n{digest}\n{closing['signed_at']}\n"
    )
    assert closing["bundle_sha256"] == digest and closing["entries"] == entries
    return entries


# ---- the attacker's tools ---------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def entry_lines(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines[1:-1]]


def line_of(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def resigned(body: list[bytes], signer: NoteSigner, origin: str, size: int) -> bytes:
    """The attacker's closing line: the digest of her body, signed with her own key under the
    log's name (so only the key, not the name, tells it apart)."""
    digest = hashlib.sha256(b"".join(body)).hexdigest()
    signed_at, entries = "2026-01-01T00:00:00+00:00", len(body) - 1
    text = f"ledgerline-audit-export/2\n{origin}\n{size}\n{entries}\n{digest}\n{signed_at}\n"
    note = text + "\n" + signer.sign(text).line()
    closing = {"type": "signature", "entries": entries, "bundle_sha256": digest, "signed_at": signed_at}
    return b"".join(body) + line_of({**closing, "note": note})


def checkpoint_of(lines: list[bytes]) -> tuple[str, int]:
    header = json.loads(lines[0])
    return header["origin"], int(header["checkpoint"].split("\n")[1])


def tampered(lines: list[bytes], change: Callable[[dict[str, Any]], None], attacker: NoteSigner) -> bytes:
    """An entry changed by ``change`` (the one with the admin's address), then re-signed."""
    body = list(lines[:-1])
    number = next(n for n, line in enumerate(body) if b"203.0.113.9" in line and n > 0)
    entry = json.loads(body[number])
    change(entry)
    body[number] = line_of(entry)
    return resigned(body, attacker, *checkpoint_of(lines))


def _new_address(entry: dict[str, Any]) -> None:
    entry["ip_address"] = "198.51.100.7"


def _new_record(entry: dict[str, Any]) -> None:
    """Another version in the record, its leaf hash recomputed: the path no longer fits."""
    record = bytearray(base64.b64decode(entry["record"]))
    record[len(b"ledgerline-record-v1") + 15] ^= 1
    leaf = sha256(b"\x00" + bytes(record))
    entry.update(record=b64(bytes(record)), leaf_hash=b64(leaf), hash=leaf.hex())
    entry["resource_version"] ^= 1


def _new_leaf(entry: dict[str, Any]) -> None:
    leaf = sha256(b"another leaf")
    entry.update(leaf_hash=b64(leaf), hash=leaf.hex())


def _new_path(entry: dict[str, Any]) -> None:
    entry["inclusion_path"][0] = b64(sha256(b"another sibling"))


CHANGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "field": (_new_address, "trusted key"),  # the proofs still hold: the signature catches it
    "record": (_new_record, "inclusion path"),
    "leaf_hash": (_new_leaf, "does not hash"),
    "path": (_new_path, "inclusion path"),
}


# ---- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def ledger(components: Components) -> Iterator[Components]:
    """Users changed by an admin from a known address, a failed login, all projected. Every
    event is a leaf of the tree from its commit on: nothing to wait for."""
    renames_by_an_admin(components)
    with pytest.raises(AuthenticationError):
        components.identity.authenticate("alice", "wrong-" + STRONG_PASSWORD)
    project_all(components)
    yield components


def vkey(components: Components) -> str:
    """The log's verifier key, as an auditor holds it."""
    return components.checkpoint_keys.signer.verifier_key.encode()


def raw_key(components: Components) -> str:
    return components.checkpoint_keys.signer.verifier_key.public_key.hex()


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def exported(ledger: Components, tmp_path: Path, *args: str, name: str = "audit.ndjson") -> Path:
    bundle = tmp_path / name
    done = run(ledger.settings.database.url, tmp_path, "audit", "export", "--output", str(bundle), *args)
    assert done.returncode == 0, done.stderr
    return bundle


def verify_export(ledger: Components, tmp_path: Path, bundle: Path | bytes, *keys: str) -> tuple[int, Any]:
    if isinstance(bundle, bytes):
        path = tmp_path / "checked.ndjson"
        path.write_bytes(bundle)
        bundle = path
    options = [value for key in keys for value in ("--public-key", key)]
    done = run(ledger.settings.database.url, tmp_path, "audit", "verify-export", str(bundle), *options)
    report = json.loads(done.stdout) if done.returncode in (0, 1) else done.stderr
    return done.returncode, report


# ---- tests ------------------------------------------------------------------------------------


def test_a_genuine_bundle_proves_every_entry_and_verifies_only_with_the_real_key(
    ledger: Components, tmp_path: Path
) -> None:
    bundle = exported(ledger, tmp_path)
    lines = lines_of(bundle)
    header, entries = json.loads(lines[0]), entry_lines(lines)
    assert header["type"] == "header" and header["format"] == "ledgerline-audit-export/2"
    assert header["origin"] == ledger.checkpoint_keys.origin
    assert header["filters"] == {"without_usage": True}  # key usage only when --action asks
    assert json.loads(lines[-1])["type"] == "signature"
    head = ledger.identity.head_position()
    assert checkpoint_of(lines)[1] == head  # the checkpoint covers every committed event
    assert {"prev_hash", "record_digest"}.isdisjoint(entries[0])
    assert any(e["action"] == "auth.login_failed" and e["status"] == "failure" for e in entries)
    assert any(e["ip_address"] == "203.0.113.9" for e in entries)

    public_key = bytes.fromhex(raw_key(ledger))
    assert independently_verified(lines, public_key) == len(entries)

    code, report = verify_export(ledger, tmp_path, bundle, vkey(ledger))
    assert code == 0 and report["ok"] is True, report
    assert report["entries"] == len(entries) and report["tree_size"] == head
    assert report["checkpoint_key"] == report["signature_key"] == vkey(ledger)
    assert report["first_position"] == entries[0]["position"]
    assert report["last_position"] == entries[-1]["position"]
    code, report = verify_export(ledger, tmp_path, bundle, "00" * 32, raw_key(ledger))  # raw hex too
    assert code == 0 and report["ok"] is True, report

    stranger = NoteSigner(ledger.checkpoint_keys.origin, os.urandom(32)).verifier_key
    for wrong in (stranger.encode(), stranger.public_key.hex()):  # the log's name, another key
        code, report = verify_export(ledger, tmp_path, bundle, wrong)
        assert code == 1 and report["ok"] is False and report["first_bad_line"] == 1, report
        assert "not signed by a trusted key" in report["reason"]

    unanchored = run(ledger.settings.database.url, tmp_path, "audit", "verify-export", str(bundle))
    assert unanchored.returncode == 2 and unanchored.stdout == ""
    assert "key you trust" in unanchored.stderr and len(unanchored.stderr.strip().splitlines()) == 1
    code, message = verify_export(ledger, tmp_path, bundle, "not-a-key")
    assert code == 2 and "--public-key" in message


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_an_entry_changed_and_re_signed_with_the_attackers_key_is_refused(
    ledger: Components, tmp_path: Path, change: str
) -> None:
    """Attack 6: change an entry (a field, its record, its leaf hash or its path), re-sign the
    bundle with one's own key under the log's name. Refused with the real key and without any."""
    lines = lines_of(exported(ledger, tmp_path))
    attacker = NoteSigner(ledger.checkpoint_keys.origin, os.urandom(32))
    alter, reason = CHANGES[change]
    forged = tampered(lines, alter, attacker)
    number = next(n for n, line in enumerate(forged.splitlines(), 1) if b"203.0.113.9" in line and n > 1)

    code, report = verify_export(ledger, tmp_path, forged, vkey(ledger))
    assert code == 1 and report["ok"] is False and reason in report["reason"], report
    expected = len(lines) if change == "field" else number  # the first bad line is named
    assert report["first_bad_line"] == expected, report
    code, _ = verify_export(ledger, tmp_path, forged)
    assert code == 2
    with pytest.raises(AssertionError):  # the independent verifier agrees
        independently_verified(forged.splitlines(keepends=True), bytes.fromhex(raw_key(ledger)))


def test_a_bundle_anchored_in_the_attackers_own_checkpoint_is_refused(
    ledger: Components, tmp_path: Path
) -> None:
    """The whole bundle made consistent again: a forged entry, a tree root recomputed for it, the
    checkpoint and the closing line signed by the attacker under the log's name."""
    lines = lines_of(exported(ledger, tmp_path))
    attacker = NoteSigner(ledger.checkpoint_keys.origin, os.urandom(32))
    origin, _ = checkpoint_of(lines)
    # A tree of her own with the entry's record changed as its last leaf, any siblings she likes.
    entry = json.loads(lines[1])
    record = bytearray(base64.b64decode(entry["record"]))
    record[-2] ^= 1
    leaf, size = sha256(b"\x00" + bytes(record)), entry["position"]
    path = [sha256(bytes([n])) for n in range(path_length(size - 1, size))]
    root = root_from_path(size - 1, size, leaf, path)
    entry.update(record=b64(bytes(record)), leaf_hash=b64(leaf), hash=leaf.hex(),
                 inclusion_path=[b64(node) for node in path])  # fmt: skip
    text = f"{origin}\n{size}\n{b64(root)}\n"
    header = {**json.loads(lines[0]), "checkpoint": text + "\n" + attacker.sign(text).line()}
    forged = resigned([line_of(header), line_of(entry)], attacker, origin, size)
    assert verify_export(ledger, tmp_path, forged, attacker.verifier_key.encode())[0] == 0  # self-consistent

    code, report = verify_export(ledger, tmp_path, forged, vkey(ledger))
    assert code == 1 and report["first_bad_line"] == 1, report
    assert "checkpoint is not signed by a trusted key" in report["reason"]
    code, report = verify_export(ledger, tmp_path, forged, raw_key(ledger))
    assert code == 1 and report["first_bad_line"] == 1, report


def test_dropped_reordered_or_cut_entries_are_refused(ledger: Components, tmp_path: Path) -> None:
    lines = lines_of(exported(ledger, tmp_path))
    assert len(lines) > 5
    key = vkey(ledger)
    attacker = NoteSigner(ledger.checkpoint_keys.origin, os.urandom(32))
    checkpoint = checkpoint_of(lines)
    dropped = lines[:3] + lines[4:]
    swapped = [lines[0], lines[2], lines[1], *lines[3:]]
    cases: list[tuple[bytes, int, str]] = [
        (b"".join(dropped), len(dropped), "changed after it was signed"),
        (resigned(dropped[:-1], attacker, *checkpoint), len(dropped), "trusted key"),
        (b"".join(swapped), 3, "position order"),
        (resigned(swapped[:-1], attacker, *checkpoint), 3, "position order"),
        (b"".join([*lines[:3], lines[2], *lines[3:]]), 4, "position order"),  # an entry twice
        (b"".join(lines[:-1]), len(lines), "missing"),  # cut before the signature
        (b"".join(lines) + lines[1], len(lines) + 1, "after the signature"),
    ]
    for forged, line, reason in cases:
        code, report = verify_export(ledger, tmp_path, forged, key)
        assert code == 1 and report["first_bad_line"] == line and reason in report["reason"], report


def test_a_filtered_export_proves_its_entries_and_its_csv_matches(ledger: Components, tmp_path: Path) -> None:
    alice = ledger.identity.find_user_id("alice")
    bundle = exported(ledger, tmp_path, "--resource-id", str(alice))
    lines = lines_of(bundle)
    entries = entry_lines(lines)
    assert entries and {e["resource_id"] for e in entries} == {str(alice)}
    assert json.loads(lines[0])["filters"] == {"resource_id": str(alice), "without_usage": True}
    assert independently_verified(lines, bytes.fromhex(raw_key(ledger))) == len(entries)
    assert verify_export(ledger, tmp_path, bundle, vkey(ledger))[0] == 0

    out = tmp_path / "alice.csv"
    done = run(ledger.settings.database.url, tmp_path, "audit", "export", "--format", "csv",
               "--resource-id", str(alice), "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and {row["resource_id"] for row in rows} == {str(alice)}
    assert "prev_hash" not in rows[0] and "record_digest" not in rows[0]
    assert [int(row["resource_version"]) for row in rows] == list(range(1, len(rows) + 1))
    assert json.loads(rows[0]["changes"])["email"] == "alice@example.com"
    assert [row["hash"] for row in rows] == [e["hash"] for e in entries]  # hash = leaf hash


def evidence_of(ledger: Components) -> AuditEvidence:
    return AuditEvidence(ledger.identity.mapper, ledger.settings.database, Sealer(ledger.identity.data_keys))


def test_entries_committed_after_the_checkpoint_are_left_out(
    ledger: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle holds the tree as the export found it: an entry committed (and projected) once
    the checkpoint is taken is past it, so it is not in the bundle (its proof could not join)."""
    taken = export_module.checkpoint_now

    def then_carol(engine: Any, keys: Any) -> Any:
        checkpoint = taken(engine, keys)
        register(ledger.identity, "carol")
        project_all(ledger)
        return checkpoint

    monkeypatch.setattr(export_module, "checkpoint_now", then_carol)
    data = b"".join(
        export(ledger.engine, evidence_of(ledger), ledger.checkpoint_keys, AuditFilter(), "ndjson")
    )
    lines = data.splitlines(keepends=True)
    _, size = checkpoint_of(lines)
    assert size < ledger.identity.head_position()
    assert all(e["position"] <= size for e in entry_lines(lines))
    assert "carol" not in data.decode()
    assert independently_verified(lines, bytes.fromhex(raw_key(ledger))) == len(lines) - 2


def test_a_page_reads_its_records_and_tree_nodes_in_a_few_queries(
    ledger: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proofs of a page are read in bulk: the statements an export issues do not grow with
    its entries, dense (every entry) or scattered over the log (one user's)."""
    for n in range(40):
        register(ledger.identity, f"user{n}")
    bob = ledger.identity.find_user_id("bob")
    for k in range(30):
        ledger.identity.update_user(bob, full_name=f"Bob {k}")
        register(ledger.identity, f"filler{k}")
    project_all(ledger)
    evidence = evidence_of(ledger)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(ledger.engine, "before_cursor_execute", count)
    try:
        for audit in (AuditFilter(), AuditFilter(resource_id=bob)):
            statements.clear()
            lines = b"".join(export(ledger.engine, evidence, ledger.checkpoint_keys, audit, "ndjson"))
            entries = len(lines.splitlines()) - 2
            assert entries > 30
            assert len(statements) < 20, (entries, statements)  # not one (or more) per entry
        monkeypatch.setattr(export_module, "MAX_PARAMETERS", 12)  # scattered proofs in several queries
        statements.clear()
        lines = b"".join(export(ledger.engine, evidence, ledger.checkpoint_keys, AuditFilter(resource_id=bob),
                                "ndjson"))  # fmt: skip
        assert len(statements) < 40
        assert independently_verified(lines.splitlines(keepends=True), bytes.fromhex(raw_key(ledger))) > 30
    finally:
        sa.event.remove(ledger.engine, "before_cursor_execute", count)


def test_after_erasure_exports_read_erased_and_still_verify(ledger: Components, tmp_path: Path) -> None:
    alice = ledger.identity.find_user_id("alice")
    assert alice is not None
    ledger.identity.erase_user(alice)
    project_all(ledger)
    bundle = exported(ledger, tmp_path, name="after.ndjson")
    text = bundle.read_text()
    assert "alice@example.com" not in text and "alice Renamed" not in text and '"[erased]"' in text
    assert "bob@example.com" in text
    assert verify_export(ledger, tmp_path, bundle, vkey(ledger))[0] == 0
    assert independently_verified(lines_of(bundle), bytes.fromhex(raw_key(ledger))) > 0
    assert run(ledger.settings.database.url, tmp_path, "audit", "verify").returncode == 0


def test_verify_reports_an_intact_log(ledger: Components, tmp_path: Path) -> None:
    done = run(ledger.settings.database.url, tmp_path, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["first_bad_position"] is None
    assert report["verified_through_position"] == ledger.identity.head_position()


def test_verify_runs_offline_on_a_copy_with_only_the_public_key(ledger: Components, tmp_path: Path) -> None:
    """An auditor's copy, no secret at hand: the published public key is all verification needs."""
    key = raw_key(ledger)
    ledger.close()
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    with database_copy(ledger.settings.database, auditor) as copy_url:
        env = {**os.environ, "LEDGERLINE_DATABASE_URL": copy_url, "LEDGERLINE_DATA_DIR": str(auditor),
               "LEDGERLINE_AUDIT_ORIGIN": ledger.checkpoint_keys.origin}  # fmt: skip
        env.pop("LEDGERLINE_SECRET_KEY", None)
        offline = subprocess.run([LEDGERLINE, "audit", "verify", "--public-key", key],
                                 env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert offline.returncode == 0, offline.stdout + offline.stderr
        assert json.loads(offline.stdout)["ok"] is True
    assert not (auditor / "secret.key").exists()  # verifying needs and makes no secret


@contextmanager
def database_copy(database: Database, directory: Path) -> Iterator[str]:
    if database.is_sqlite:
        copy = directory / "copy.sqlite3"
        shutil.copy(database.sqlite_path, copy)
        yield f"sqlite:///{copy}"
        return
    name = database.url.rsplit("/", 1)[1]
    original, copy_name = sql.Identifier(name), sql.Identifier(name + "_copy")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(copy_name, original))
    try:
        yield database.url + "_copy"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(copy_name))


def test_an_event_changed_in_the_store_ends_the_export_unsigned(ledger: Components, tmp_path: Path) -> None:
    """An owner rewrites a stored event's bytes so that its audit entry reads the same (JSON
    whitespace): the row check cannot see it, the leaf can. The export stops before that entry,
    names its position and signs nothing."""
    alice = ledger.identity.find_user_id("alice")
    database = ledger.settings.database
    column = "rowid" if database.is_sqlite else "notification_id"
    table = database.events_table
    with ledger.engine.connect() as conn:
        position = conn.execute(
            sa.text(f"SELECT max({column}) FROM {table} WHERE originator_id = :id"),
            {"id": alice.hex if database.is_sqlite else alice},
        ).scalar_one()
    with writing(ledger.engine) as conn:  # a database administrator at work
        if database.is_sqlite:
            conn.execute(sa.text(f"DROP TRIGGER {table}_no_update"))
            conn.execute(sa.text(f"UPDATE {table} SET state = CAST(X'20' || state AS BLOB) WHERE rowid = :p"),
                         {"p": position})  # fmt: skip
        else:
            conn.execute(sa.text(f"DROP TRIGGER {table}_append_only ON {table}"))
            conn.execute(sa.text(f"UPDATE {table} SET state = '\\x20'::bytea || state WHERE {column} = :p"),
                         {"p": position})  # fmt: skip
    done = run(database.url, tmp_path, "audit", "export", "--format", "ndjson")
    assert done.returncode == 1, done.stderr
    assert f"position {position} is not the leaf" in done.stderr, done.stderr
    assert '"type":"signature"' not in done.stdout


@pytest.mark.parametrize("move", ["an event that no longer decodes", "a tree node gone"])
def test_an_export_that_fails_midway_says_where_in_one_line_and_signs_nothing(
    ledger: Components, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, move: str
) -> None:
    """The owner breaks what a later page needs: the command prints one line naming the
    position(s) and what to run, exits 1, and what it wrote before is an unsigned bundle."""
    database = ledger.settings.database
    with ledger.engine.connect() as conn:
        first, last = conn.execute(sa.text("SELECT min(position), max(position) FROM audit_log")).one()
    with as_owner(ledger) as conn:
        if move == "an event that no longer decodes":
            change = events_sql(database, "UPDATE {events} SET state = :state WHERE {pos} = :p")
            assert conn.execute(change, {"state": b"{not json", "p": last}).rowcount == 1
        else:  # a sibling the last entry's inclusion proof needs
            gone = sa.text("DELETE FROM audit_tree_nodes WHERE level = 0 AND idx = :i")
            assert conn.execute(gone, {"i": (last - 1) ^ 1}).rowcount == 1
    monkeypatch.setattr(export_module, "BATCH", 2)  # pages of two entries, each line written at once
    monkeypatch.setattr(export_module, "_chunks", functools.partial(export_module._chunks, size=1))
    bundle = tmp_path / "partial.ndjson"
    env = {"LEDGERLINE_DATABASE_URL": database.url, "LEDGERLINE_DATA_DIR": str(tmp_path),
           "LEDGERLINE_SECRET_KEY": TEST_SECRET}  # fmt: skip
    result = CliRunner().invoke(audit, ["export", "--output", str(bundle)], env=env)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ") and "`ledgerline audit verify`" in result.stderr
    assert "position" in result.stderr and "unsigned" in result.stderr
    if move == "an event that no longer decodes":
        assert f"position {last}" in result.stderr
    lines = lines_of(bundle)
    assert json.loads(lines[0])["type"] == "header" and len(lines) > 2  # it did stop midway
    assert all(json.loads(line)["type"] == "entry" for line in lines[1:])
    assert entry_lines(lines)[0]["position"] == first
    code, report = verify_export(ledger, tmp_path, bundle, vkey(ledger))
    assert code == 1 and report["ok"] is False and "signature line is missing" in report["reason"]
