"""`ledgerline audit checkpoint`, `audit public-key` and `audit verify --since FILE` as an auditor
runs them (real processes): a kept checkpoint catches what the owner of the tables can otherwise
hide, a log rewritten or cut short with its tree rebuilt to match. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from eventstore.audit_chain.checkpoints import latest_checkpoint
from eventstore.audit_chain.note import Checkpoint, NoteSigner, VerifierKey, open_checkpoint
from eventstore.audit_chain.tree import backfill
from ledgerline.bootstrap import Components
from tests.integration.helpers import project_all, register
from tests.integration.merkle_attacks import EVIDENCE, as_owner
from tests.integration.test_cli import LEDGERLINE, run


@pytest.fixture
def ledger(components: Components) -> Components:
    for name in ("alice", "bob", "carol"):
        register(components.identity, name)
    project_all(components)
    return components


def published(components: Components, tmp_path: Path) -> dict[str, str]:
    done = run(components.settings.database.url, tmp_path, "audit", "public-key")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def checkpoint(components: Components, tmp_path: Path, vkey: str) -> tuple[str, Checkpoint]:
    done = run(components.settings.database.url, tmp_path, "audit", "checkpoint")
    assert done.returncode == 0, done.stderr
    origin = components.checkpoint_keys.origin
    return done.stdout, open_checkpoint(done.stdout, [VerifierKey.parse(vkey)], origin=origin)


def auditor(components: Components, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`audit verify` as an auditor runs it: the published key, no secret (so only the log is
    checked: snapshots and audit rows need the secret)."""
    env = {
        **os.environ,
        "LEDGERLINE_DATABASE_URL": components.settings.database.url,
        "LEDGERLINE_DATA_DIR": str(tmp_path / "auditor"),
        "LEDGERLINE_AUDIT_ORIGIN": components.checkpoint_keys.origin,
    }
    env.pop("LEDGERLINE_SECRET_KEY", None)
    command = [LEDGERLINE, "audit", "verify", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def keep(tmp_path: Path, note: str, name: str = "kept.checkpoint") -> Path:
    path = tmp_path / name
    path.write_text(note)
    return path


def position_column(components: Components) -> str:
    return "rowid" if components.settings.database.is_sqlite else "notification_id"


def test_checkpoint_prints_exactly_a_note_that_verifies(ledger: Components, tmp_path: Path) -> None:
    keys = published(ledger, tmp_path)
    vkey = VerifierKey.parse(keys["vkey"])
    assert keys["origin"] == vkey.name == ledger.checkpoint_keys.origin
    assert vkey.public_key.hex() == keys["public_key"] and keys["retired_vkeys"] == []

    note, signed = checkpoint(ledger, tmp_path, keys["vkey"])
    assert signed.size == ledger.identity.head_position()
    with ledger.engine.connect() as conn:
        stored = latest_checkpoint(conn)
    assert stored is not None and note == stored.note  # the note and nothing else
    assert checkpoint(ledger, tmp_path, keys["vkey"])[0] == note  # nothing new: the same one
    register(ledger.identity, "dave")
    assert checkpoint(ledger, tmp_path, keys["vkey"])[1].size == ledger.identity.head_position()


def test_verify_since_a_kept_checkpoint_passes_while_the_log_grows(
    ledger: Components, tmp_path: Path
) -> None:
    keys = published(ledger, tmp_path)
    note, signed = checkpoint(ledger, tmp_path, keys["vkey"])
    kept = keep(tmp_path, note)
    register(ledger.identity, "dave")
    project_all(ledger)

    done = run(ledger.settings.database.url, tmp_path, "audit", "verify", "--since", str(kept))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["since_size"] == signed.size
    assert report["verified_through_position"] == ledger.identity.head_position() > signed.size
    assert report["snapshots_verified"] is not None  # the caches are still checked
    for key in (keys["vkey"], keys["public_key"]):  # a verifier key, or the bare key in hex
        assert auditor(ledger, tmp_path, "--public-key", key, "--since", str(kept)).returncode == 0


def test_verify_since_catches_an_event_rewritten_with_its_tree(ledger: Components, tmp_path: Path) -> None:
    vkey = published(ledger, tmp_path)["vkey"]
    kept = keep(tmp_path, checkpoint(ledger, tmp_path, vkey)[0])
    register(ledger.identity, "dave")
    database, column = ledger.settings.database, position_column(ledger)
    with as_owner(ledger) as conn:  # the event changed, the tree rebuilt over it, old checkpoints gone
        conn.execute(sa.text(f"UPDATE {database.events_table} SET topic = topic || 'x' WHERE {column} = 3"))
        for table in EVIDENCE:
            conn.execute(sa.text(f"DELETE FROM {table}"))
        backfill(conn)

    unaware = auditor(ledger, tmp_path, "--public-key", vkey)
    assert unaware.returncode == 0, unaware.stdout + unaware.stderr  # consistent on its own: hidden
    caught = auditor(ledger, tmp_path, "--public-key", vkey, "--since", str(kept))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    report = json.loads(caught.stdout)
    assert report["ok"] is False and "no longer extends the kept checkpoint" in report["reason"]
    assert "rewritten" in caught.stderr


def test_verify_since_catches_a_truncated_tail(ledger: Components, tmp_path: Path) -> None:
    vkey = published(ledger, tmp_path)["vkey"]
    kept = keep(tmp_path, checkpoint(ledger, tmp_path, vkey)[0])
    database, column = ledger.settings.database, position_column(ledger)
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.text(f"SELECT {column} FROM {database.events_table} ORDER BY 1")).scalars()
        cut = list(stored)[-4]  # the three newest events go
    with as_owner(ledger) as conn:
        conn.execute(sa.text(f"DELETE FROM {database.events_table} WHERE {column} > :cut"), {"cut": cut})
        conn.execute(
            sa.text("DELETE FROM audit_tree_nodes WHERE (idx + 1) * (1 << level) > :cut"), {"cut": cut}
        )
        conn.execute(sa.text("DELETE FROM audit_tree_checkpoints WHERE tree_size > :cut"), {"cut": cut})

    unaware = auditor(ledger, tmp_path, "--public-key", vkey)
    assert unaware.returncode == 0, unaware.stdout + unaware.stderr
    assert json.loads(unaware.stdout)["tree_size"] == cut
    caught = auditor(ledger, tmp_path, "--public-key", vkey, "--since", str(kept))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    report = json.loads(caught.stdout)
    assert (
        report["ok"] is False and "truncated" in report["reason"] and report["first_bad_position"] == cut + 1
    )


def test_verify_refuses_a_kept_checkpoint_it_cannot_trust(ledger: Components, tmp_path: Path) -> None:
    vkey = published(ledger, tmp_path)["vkey"]
    note, signed = checkpoint(ledger, tmp_path, vkey)
    origin = ledger.checkpoint_keys.origin
    forger = NoteSigner(origin, b"\x07" * 32)  # her own key, under the log's name
    body = note[: note.rindex("\n\n") + 1]
    grown = body.replace(f"\n{signed.size}\n", f"\n{signed.size + 1}\n")
    forged = {
        "forged": body + "\n" + forger.sign(body).line(),
        "altered": grown + note[note.rindex("\n\n") + 1 :],  # the genuine signature, another size
        "unsigned": body,
        "garbage": "not a checkpoint\n",
    }
    for name, text in forged.items():
        refused = auditor(ledger, tmp_path, "--public-key", vkey, "--since", str(keep(tmp_path, text, name)))
        assert refused.returncode == 2, (name, refused.stdout, refused.stderr)
        assert refused.stdout == "" and len(refused.stderr.strip().splitlines()) == 1, (name, refused.stderr)
        assert refused.stderr.startswith("error: ") and name in refused.stderr


def test_verify_needs_a_key_it_trusts(ledger: Components, tmp_path: Path) -> None:
    vkey = published(ledger, tmp_path)["vkey"]
    checkpoint(ledger, tmp_path, vkey)
    no_key = auditor(ledger, tmp_path)  # no secret at hand, no --public-key
    assert no_key.returncode == 2 and "--public-key" in no_key.stderr and no_key.stdout == ""
    assert not (tmp_path / "auditor" / "secret.key").exists()  # verifying makes no secret
    bad = auditor(ledger, tmp_path, "--public-key", "nonsense")
    assert bad.returncode == 2 and "--public-key" in bad.stderr
    stranger = NoteSigner(ledger.checkpoint_keys.origin, b"\x07" * 32).verifier_key.encode()
    untrusted = auditor(ledger, tmp_path, "--public-key", stranger)  # the stored checkpoint: not hers
    assert untrusted.returncode == 1 and json.loads(untrusted.stdout)["checkpoints_verified"] == 0
    assert auditor(ledger, tmp_path, "--public-key", vkey).returncode == 0
