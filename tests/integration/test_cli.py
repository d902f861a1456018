"""The ``ledgerline`` command as an operator runs it: a real process per call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ledgerline.bootstrap import build
from tests.conftest import TEST_SECRET, settings_for

LEDGERLINE = str(Path(sys.executable).with_name("ledgerline"))


def run(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LEDGERLINE_DATABASE_URL": database_url,
        "LEDGERLINE_DATA_DIR": str(data_dir),
        "LEDGERLINE_SECRET_KEY": TEST_SECRET,
        "LEDGERLINE_ARGON2_MEMORY_KIB": "1024",
        "LEDGERLINE_ARGON2_TIME_COST": "1",
    }
    return subprocess.run([LEDGERLINE, *args], env=env, capture_output=True, text=True, timeout=120)


ADMIN = ("--username", "root", "--email", "Root@Example.com", "--password", "Admin-Passw0rd!")


def test_db_init_twice_then_create_admin_prints_a_working_key(database_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        done = run(database_url, tmp_path, "db", "init")
        assert done.returncode == 0, done.stderr
        assert "database ready" in done.stdout
    created = run(database_url, tmp_path, "create-admin", *ADMIN)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("llk_")
    assert "Admin-Passw0rd!" not in created.stdout + created.stderr

    built = build(settings_for(database_url, tmp_path))
    try:
        verified = built.identity.verify_api_key(key)
        admin = built.identity.get_user(verified.owner_id)
        assert (admin.username, admin.is_superuser, admin.is_verified) == ("root", True, True)
        assert admin.email_address == "root@example.com"
        assert verified.permissions == {"*": True}
    finally:
        built.close()

    again = run(database_url, tmp_path, "create-admin", *ADMIN)
    assert again.returncode == 1
    assert "username is already taken" in again.stderr


def test_create_admin_refuses_a_weak_password_and_stores_nothing(database_url: str, tmp_path: Path) -> None:
    refused = run(
        database_url,
        tmp_path,
        "create-admin",
        "--username",
        "root",
        "--email",
        "r@example.com",
        "--password",
        "weak",
    )
    assert refused.returncode == 2
    assert "password" in refused.stderr.lower()
    created = run(database_url, tmp_path, "create-admin", *ADMIN)
    assert created.returncode == 0, created.stderr


def test_admin_password_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    os.environ["LEDGERLINE_ADMIN_PASSWORD"] = "Env-Passw0rd!"
    try:
        created = run(url, tmp_path, "create-admin", "--username", "root", "--email", "r@example.com")
    finally:
        del os.environ["LEDGERLINE_ADMIN_PASSWORD"]
    assert created.returncode == 0, created.stderr
    built = build(settings_for(url, tmp_path))
    try:
        assert built.identity.authenticate("root", "Env-Passw0rd!").id == built.identity.find_user_id("root")
    finally:
        built.close()


def test_a_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    failed = run("mysql://nope", tmp_path, "db", "init")
    assert failed.returncode != 0
    assert "LEDGERLINE_DATABASE_URL" in failed.stderr
    assert "Traceback" not in failed.stderr
