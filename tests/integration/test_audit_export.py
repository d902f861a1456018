"""`ledgerline audit verify|export|verify-export|public-key` as an auditor runs them: real
processes, real databases, an offline copy, and exports checked with nothing but the public key."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from domain.errors import AuthenticationError
from eventstore.audit_chain.bundle import FORMAT
from eventstore.audit_chain.signing import Signer
from eventstore.database import Database
from ledgerline.bootstrap import Components
from tests.conftest import PG_ADMIN_DSN
from tests.integration.helpers import STRONG_PASSWORD, project_all, renames_by_an_admin
from tests.integration.test_cli import LEDGERLINE, run


@pytest.fixture
def ledger(components: Components) -> Iterator[Components]:
    """Users changed by an admin from a known address, a failed login, all projected and sealed."""
    renames_by_an_admin(components)
    with pytest.raises(AuthenticationError):
        components.identity.authenticate("alice", "wrong-" + STRONG_PASSWORD)
    project_all(components)
    components.sealer().catch_up()
    yield components


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def public_key(components: Components, tmp_path: Path) -> str:
    done = run(components.settings.database.url, tmp_path, "audit", "public-key")
    assert done.returncode == 0, done.stderr
    published = json.loads(done.stdout)
    assert published["public_key"] == components.signer.public_key.hex()
    return published["public_key"]


def test_verify_reports_an_intact_chain(ledger: Components, tmp_path: Path) -> None:
    done = run(ledger.settings.database.url, tmp_path, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["first_bad_position"] is None
    assert report["verified_through_position"] == ledger.identity.head_position()
    assert report["checkpoints_verified"] >= 1 and len(report["head_hash"]) == 64


def test_an_export_verifies_on_its_own_and_any_change_is_caught(ledger: Components, tmp_path: Path) -> None:
    bundle = tmp_path / "audit.ndjson"
    url = ledger.settings.database.url
    done = run(url, tmp_path, "audit", "export", "--format", "ndjson", "--output", str(bundle))
    assert done.returncode == 0, done.stderr
    lines = lines_of(bundle)
    entries = [json.loads(line) for line in lines[1:-1]]
    assert json.loads(lines[0])["type"] == "header" and json.loads(lines[-1])["type"] == "signature"
    assert [e["position"] for e in entries] == sorted(e["position"] for e in entries)
    assert all(e["hash"] and e["prev_hash"] and e["record_digest"] for e in entries)
    assert any(e["action"] == "auth.login_failed" and e["status"] == "failure" for e in entries)
    assert any(e["ip_address"] == "203.0.113.9" for e in entries)

    key = public_key(ledger, tmp_path)
    checked = run(url, tmp_path, "audit", "verify-export", str(bundle), "--public-key", key)
    assert checked.returncode == 0, checked.stdout
    assert json.loads(checked.stdout)["entries"] == len(entries)

    changed = tmp_path / "changed.ndjson"
    changed.write_bytes(b"".join(lines).replace(b"203.0.113.9", b"203.0.113.8", 1))
    dropped = tmp_path / "dropped.ndjson"
    dropped.write_bytes(b"".join(lines[:3] + lines[4:]))
    truncated = tmp_path / "truncated.ndjson"
    truncated.write_bytes(b"".join(lines[:-1]))
    for forged, reason in ((changed, "changed after it was signed"), (dropped, "changed after it was signed"),
                           (truncated, "missing")):  # fmt: skip
        refused = run(url, tmp_path, "audit", "verify-export", str(forged), "--public-key", key)
        assert refused.returncode == 1 and reason in json.loads(refused.stdout)["reason"], refused.stdout
    other = run(url, tmp_path, "audit", "verify-export", str(bundle), "--public-key", "00" * 32)
    assert other.returncode == 1 and "unknown key" in json.loads(other.stdout)["reason"]


def resigned(lines: list[bytes], old: bytes, new: bytes, attacker: Signer) -> bytes:
    """The attacker's bundle: an entry changed, then the closing line re-signed with her own key."""
    body = [line.replace(old, new) for line in lines[:-1]]
    assert body != lines[:-1]
    closing = json.loads(lines[-1])
    closing["bundle_sha256"] = hashlib.sha256(b"".join(body)).hexdigest()
    message = f"{FORMAT}\n{closing['bundle_sha256']}\n{closing['entries']}\n{closing['signed_at']}"
    closing.update(
        key_id=attacker.key_id,
        public_key=attacker.public_key.hex(),
        signature=attacker.sign(message.encode()).hex(),
    )
    return b"".join(body) + json.dumps(closing, separators=(",", ":")).encode() + b"\n"


def test_a_bundle_re_signed_with_the_attackers_key_is_refused(ledger: Components, tmp_path: Path) -> None:
    """Attack 6: change an entry, re-sign with one's own Ed25519 key; the bundle names that key."""
    url, bundle = ledger.settings.database.url, tmp_path / "audit.ndjson"
    assert run(url, tmp_path, "audit", "export", "--output", str(bundle)).returncode == 0
    forged = tmp_path / "forged.ndjson"
    forged.write_bytes(resigned(lines_of(bundle), b"203.0.113.9", b"198.51.100.7", Signer(os.urandom(32))))
    key = public_key(ledger, tmp_path)

    unanchored = run(url, tmp_path, "audit", "verify-export", str(forged))
    assert unanchored.returncode != 0 and unanchored.stdout == ""
    assert "key you trust" in unanchored.stderr and "ledgerline audit public-key" in unanchored.stderr
    assert "checked against" not in unanchored.stderr and len(unanchored.stderr.strip().splitlines()) == 1
    anchored = run(url, tmp_path, "audit", "verify-export", str(forged), "--public-key", key)
    assert anchored.returncode == 1 and "unknown key" in json.loads(anchored.stdout)["reason"]


def test_a_genuine_bundle_verifies_only_against_a_trusted_key(ledger: Components, tmp_path: Path) -> None:
    """The key a bundle carries proves nothing: without --public-key even a genuine one is refused."""
    url, bundle = ledger.settings.database.url, tmp_path / "audit.ndjson"
    assert run(url, tmp_path, "audit", "export", "--output", str(bundle)).returncode == 0
    unanchored = run(url, tmp_path, "audit", "verify-export", str(bundle))
    assert unanchored.returncode != 0 and "--public-key" in unanchored.stderr, unanchored.stderr
    key = public_key(ledger, tmp_path)
    anchored = run(url, tmp_path, "audit", "verify-export", str(bundle), "--public-key", "00" * 32,
                   "--public-key", key)  # fmt: skip
    assert anchored.returncode == 0, anchored.stdout
    assert json.loads(anchored.stdout)["key_id"] == ledger.signer.key_id


def test_a_filtered_csv_export_holds_exactly_the_matching_entries(ledger: Components, tmp_path: Path) -> None:
    alice = ledger.identity.find_user_id("alice")
    out = tmp_path / "alice.csv"
    done = run(ledger.settings.database.url, tmp_path, "audit", "export", "--format", "csv",
               "--resource-id", str(alice), "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and {row["resource_id"] for row in rows} == {str(alice)}
    assert [int(row["resource_version"]) for row in rows] == list(range(1, len(rows) + 1))
    assert json.loads(rows[0]["changes"])["email"] == "alice@example.com"


def test_after_erasure_exports_read_erased_and_the_chain_still_verifies(
    ledger: Components, tmp_path: Path
) -> None:
    alice = ledger.identity.find_user_id("alice")
    assert alice is not None
    ledger.identity.erase_user(alice)
    project_all(ledger)
    ledger.sealer().catch_up()
    url, bundle = ledger.settings.database.url, tmp_path / "after.ndjson"
    assert run(url, tmp_path, "audit", "export", "--output", str(bundle)).returncode == 0
    text = bundle.read_text()
    assert "alice@example.com" not in text and "alice Renamed" not in text and '"[erased]"' in text
    assert "bob@example.com" in text
    key = public_key(ledger, tmp_path)
    assert run(url, tmp_path, "audit", "verify-export", str(bundle), "--public-key", key).returncode == 0
    assert run(url, tmp_path, "audit", "verify").returncode == 0


def test_verify_runs_offline_on_a_copy_with_only_the_public_key(ledger: Components, tmp_path: Path) -> None:
    """An auditor's copy, no secret at hand: the published public key is all verification needs."""
    key = public_key(ledger, tmp_path)
    ledger.close()
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    with database_copy(ledger.settings.database, auditor) as copy_url:
        env = {**os.environ, "LEDGERLINE_DATABASE_URL": copy_url, "LEDGERLINE_DATA_DIR": str(auditor)}
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
