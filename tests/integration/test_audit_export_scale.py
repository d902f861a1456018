"""An export of 20,000 audit entries (``LEDGERLINE_TEST_EXPORT_ENTRIES=200000`` for the closing
notes' figure), each with its record and its inclusion proof, streams in constant memory: the
CLI's peak RSS for the whole log is within a few MiB of its peak for a twentieth of it, every
entry is there, and `verify-export` checks them all (constant memory too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from eventstore.passwords import Passwords
from ledgerline.bootstrap import build
from projections.audit_log.queries import AuditFilter, count_entries
from projections.catalog import live_generation
from projections.runner import ProjectionRunner
from tests.conftest import TEST_SECRET, settings_for
from tests.integration.helpers import STRONG_PASSWORD
from tests.integration.test_cli import LEDGERLINE

ENTRIES = int(os.environ.get("LEDGERLINE_TEST_EXPORT_ENTRIES", "20000"))  # a bundle held whole: +40 MiB
PER_USER = 250  # one registration and 249 profile changes, saved in one append
MEASURE = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss_kib(env: dict[str, str], *args: str) -> int:
    done = subprocess.run([sys.executable, "-c", MEASURE, LEDGERLINE, *args], env=env,
                          capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    return int(done.stdout.strip())


@pytest.mark.timeout(1800)  # at 200,000 entries, writing and projecting alone take minutes
def test_an_export_of_many_entries_streams_in_constant_memory(
    pg_database: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    components = build(settings_for(pg_database, tmp_path), init=True, passwords=fast_passwords)
    try:
        identity = components.identity
        started = time.perf_counter()
        for n in range(ENTRIES // PER_USER):
            user = identity.get_user(identity.register_user(username=f"u{n}", email=f"u{n}@example.com",
                                                            password=STRONG_PASSWORD).id)  # fmt: skip
            for k in range(PER_USER - 1):
                user.update_profile(full_name=f"Name {n} {k}")
            identity.save(user)
        print(f"\nwrote in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        with components.engine.connect() as conn:
            generation = live_generation(conn, "audit_log")[0]
        ProjectionRunner(components.projections["audit_log"], identity, components.engine).catch_up(
            generation
        )
        print(f"\nprojected in {time.perf_counter() - started:.1f}s")
        with components.engine.connect() as conn:
            total = count_entries(conn, AuditFilter())
            tail_start = conn.execute(
                sa.text("SELECT position FROM audit_log ORDER BY position DESC OFFSET :n LIMIT 1"),
                {"n": total // 20},
            ).scalar_one()
    finally:
        components.close()
    assert total >= ENTRIES

    env = {**os.environ, "LEDGERLINE_DATABASE_URL": pg_database, "LEDGERLINE_DATA_DIR": str(tmp_path),
           "LEDGERLINE_SECRET_KEY": TEST_SECRET}  # fmt: skip
    whole, part = tmp_path / "whole.ndjson", tmp_path / "part.ndjson"
    started = time.perf_counter()
    whole_rss = peak_rss_kib(env, "audit", "export", "--output", str(whole))
    print(f"\nexported in {time.perf_counter() - started:.1f}s ({whole.stat().st_size / 2**20:.0f} MiB)")
    part_rss = peak_rss_kib(
        env, "audit", "export", "--after-position", str(tail_start), "--output", str(part)
    )

    with whole.open("rb") as bundle:
        lines = sum(1 for _ in bundle)
    assert lines == total + 2  # header, entries, signature
    print(f"\nexport peak RSS: {whole_rss / 1024:.1f} MiB for {total:,} entries, "
          f"{part_rss / 1024:.1f} MiB for {total // 20:,}")  # fmt: skip
    assert whole_rss - part_rss < 16 * 1024, (whole_rss, part_rss)

    key = components.checkpoint_keys.signer.verifier_key.encode()  # the auditor's trusted key
    started = time.perf_counter()
    verify_rss = peak_rss_kib(env, "audit", "verify-export", str(whole), "--public-key", key)  # exit 0
    print(f"\nverified in {time.perf_counter() - started:.1f}s, peak RSS {verify_rss / 1024:.1f} MiB")
    verify_part_rss = peak_rss_kib(env, "audit", "verify-export", str(part), "--public-key", key)
    checked = subprocess.run([LEDGERLINE, "audit", "verify-export", str(part), "--public-key", key],
                             env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert checked.returncode == 0, checked.stdout
    report = json.loads(checked.stdout)
    assert report["entries"] == total // 20 and report["first_position"] > tail_start
    assert verify_rss - verify_part_rss < 16 * 1024, (verify_rss, verify_part_rss)
