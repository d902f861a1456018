"""Settings from environment variables: defaults and refusals (pure: plain dicts, no files)."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import pytest

from domain.values import Lockout
from eventstore.audit_chain.note import NoteSigner
from eventstore.passwords import Argon2Parameters
from ledgerline.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.database.url == "sqlite:///var/ledgerline.sqlite3"
    assert settings.database.is_sqlite is True
    assert settings.data_dir == Path("var")
    assert settings.secret_key is None
    assert settings.argon2 == Argon2Parameters(memory_kib=19456, time_cost=2, parallelism=1)
    assert settings.lockout == Lockout(max_failures=5, seconds=900)
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.pool_size == 10
    assert settings.login_rate_limit == 10


def test_from_env_does_not_touch_the_file_system(tmp_path: Path) -> None:
    data_dir = tmp_path / "not-created"

    settings = Settings.from_env({"LEDGERLINE_DATA_DIR": str(data_dir)})

    assert settings.data_dir == data_dir
    assert settings.database.url == f"sqlite:///{data_dir / 'ledgerline.sqlite3'}"
    assert not data_dir.exists()


def test_values_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "LEDGERLINE_DATABASE_URL": "postgresql://ledger:pw@db.internal:5433/ledger",
            "LEDGERLINE_ARGON2_MEMORY_KIB": "65536",
            "LEDGERLINE_ARGON2_TIME_COST": "3",
            "LEDGERLINE_ARGON2_PARALLELISM": "4",
            "LEDGERLINE_LOCKOUT_MAX_FAILURES": "3",
            "LEDGERLINE_LOCKOUT_SECONDS": "60",
            "LEDGERLINE_HOST": "192.0.2.10",
            "LEDGERLINE_PORT": " 9000 ",
            "LEDGERLINE_POOL_SIZE": "20",
            "LEDGERLINE_LOGIN_RATE_LIMIT": "0",
        }
    )

    assert settings.database.is_postgres is True
    assert settings.argon2 == Argon2Parameters(memory_kib=65536, time_cost=3, parallelism=4)
    assert settings.lockout == Lockout(max_failures=3, seconds=60)
    assert settings.host == "192.0.2.10"
    assert settings.port == 9000
    assert settings.pool_size == 20
    assert settings.login_rate_limit == 0


def test_readiness_bounds_default_to_the_contract_and_are_read_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.ready_stall_seconds, defaults.ready_max_lag) == (30, 1000)

    settings = Settings.from_env({"LEDGERLINE_READY_STALL_SECONDS": "5", "LEDGERLINE_READY_MAX_LAG": "0"})
    assert (settings.ready_stall_seconds, settings.ready_max_lag) == (5, 0)


def test_checkpoints_default_to_one_a_second_named_after_the_database_host() -> None:
    defaults = Settings.from_env({})
    assert defaults.checkpoint_seconds == 1
    assert defaults.audit_origin == f"ledgerline/{socket.gethostname()}"  # the embedded store: this machine
    assert defaults.audit_retired_keys == ()
    on_postgres = Settings.from_env({"LEDGERLINE_DATABASE_URL": "postgresql://u:pw@db.internal:5433/ledger"})
    assert on_postgres.audit_origin == "ledgerline/db.internal"  # every process of a deployment alike

    old = NoteSigner("example.com/log", bytes(range(32))).verifier_key
    settings = Settings.from_env(
        {
            "LEDGERLINE_CHECKPOINT_SECONDS": "60",
            "LEDGERLINE_AUDIT_ORIGIN": "example.com/log",
            "LEDGERLINE_AUDIT_RETIRED_KEYS": f" {old.encode()}, ",
        }
    )
    assert (settings.checkpoint_seconds, settings.audit_origin) == (60, "example.com/log")
    assert settings.audit_retired_keys == (old,)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("AUDIT_ORIGIN", "two words"),
        ("AUDIT_ORIGIN", "a+b"),
        ("AUDIT_RETIRED_KEYS", "example.com/log+00000000+AAAA"),
        ("CHECKPOINT_SECONDS", "0"),
    ],
)
def test_a_bad_checkpoint_setting_is_refused_with_its_name(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"LEDGERLINE_{name}"):
        Settings.from_env({f"LEDGERLINE_{name}": raw})


def test_blank_values_mean_the_default() -> None:
    settings = Settings.from_env({"LEDGERLINE_PORT": "  ", "LEDGERLINE_DATABASE_URL": ""})

    assert settings.port == 8000
    assert settings.database.url == "sqlite:///var/ledgerline.sqlite3"


@pytest.mark.parametrize("raw", ["80a", "eighty", "8000.0", "0x1f90", "--1"])
def test_a_non_numeric_number_is_refused_with_its_name(raw: str) -> None:
    with pytest.raises(SettingsError, match="LEDGERLINE_PORT") as raised:
        Settings.from_env({"LEDGERLINE_PORT": raw})

    assert "whole number" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "0"),
        ("PORT", "65536"),
        ("ARGON2_MEMORY_KIB", "7"),
        ("ARGON2_TIME_COST", "0"),
        ("ARGON2_TIME_COST", "101"),
        ("ARGON2_PARALLELISM", "65"),
        ("LOCKOUT_MAX_FAILURES", "0"),
        ("LOCKOUT_SECONDS", "0"),
        ("POOL_SIZE", "201"),
        ("LOGIN_RATE_LIMIT", "-1"),
        ("READY_STALL_SECONDS", "0"),
        ("READY_MAX_LAG", "-1"),
    ],
)
def test_an_out_of_range_number_is_refused_with_its_name(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"LEDGERLINE_{name}") as raised:
        Settings.from_env({f"LEDGERLINE_{name}": raw})

    assert "between" in str(raised.value)


@pytest.mark.parametrize("name", ["PORT", "ARGON2_MEMORY_KIB", "LOCKOUT_MAX_FAILURES", "POOL_SIZE"])
def test_a_setting_error_names_only_the_bad_variable(name: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({f"LEDGERLINE_{name}": "x"})

    assert str(raised.value).startswith(f"LEDGERLINE_{name} ")


@pytest.mark.parametrize(
    "url",
    ["mysql://ledger:hunter2-secret@db/ledger", "oracle://db/x", "sqlite://", "ledger.sqlite3", "http://x"],
)
def test_a_bad_database_url_is_refused_with_its_name(url: str) -> None:
    with pytest.raises(SettingsError, match="LEDGERLINE_DATABASE_URL"):
        Settings.from_env({"LEDGERLINE_DATABASE_URL": url})


def test_a_bad_database_url_error_hides_the_password() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"LEDGERLINE_DATABASE_URL": "mysql://ledger:hunter2-secret@db/ledger"})

    assert "hunter2-secret" not in str(raised.value)


@pytest.mark.parametrize("url", ["sqlite:///tmp/x.sqlite3", "postgresql://u@h/db", "postgres://h/db"])
def test_supported_database_urls(url: str) -> None:
    assert Settings.from_env({"LEDGERLINE_DATABASE_URL": url}).database.url == url


SECRET = bytes(range(32))


@pytest.mark.parametrize(
    "encoded",
    [SECRET.hex(), SECRET.hex().upper(), base64.b64encode(SECRET).decode(), f"  {SECRET.hex()}\n"],
    ids=["hex", "HEX", "base64", "hex-with-whitespace"],
)
def test_a_32_byte_secret_is_accepted_as_hex_or_base64(encoded: str) -> None:
    assert Settings.from_env({"LEDGERLINE_SECRET_KEY": encoded}).secret_key == SECRET


def test_a_random_base64_secret_round_trips() -> None:
    secret = os.urandom(48)

    settings = Settings.from_env({"LEDGERLINE_SECRET_KEY": base64.b64encode(secret).decode()})

    assert settings.secret_key == secret


@pytest.mark.parametrize(
    "encoded",
    [
        "short",
        bytes(31).hex(),
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(16)).decode(),
        "not hex, not base64!",
    ],
    ids=["word", "hex-31", "base64-31", "base64-16", "neither"],
)
def test_a_short_secret_is_refused_with_its_name(encoded: str) -> None:
    with pytest.raises(SettingsError, match="LEDGERLINE_SECRET_KEY"):
        Settings.from_env({"LEDGERLINE_SECRET_KEY": encoded})


def test_a_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)
