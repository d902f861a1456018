"""``*_FILE`` variants of the secret settings (issue 14): read in one place, the trailing newline
stripped, a clear error (naming the variable and the file, never the content) when both are given
or the file cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerline.secret_files import SECRET_SETTINGS, read_secret_files
from ledgerline.settings import Settings, SettingsError

SECRET = "ab" * 32


def test_the_file_becomes_the_variable_and_its_trailing_newline_goes(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(SECRET + "\n")
    (tmp_path / "url").write_text("postgresql://app:p%40ss@db:5432/ledgerline\r\n")
    environ = {
        "LEDGERLINE_SECRET_KEY_FILE": str(tmp_path / "key"),
        "LEDGERLINE_DATABASE_URL_FILE": str(tmp_path / "url"),
    }
    read_secret_files(environ)
    assert environ == {
        "LEDGERLINE_SECRET_KEY": SECRET,
        "LEDGERLINE_DATABASE_URL": "postgresql://app:p%40ss@db:5432/ledgerline",
    }
    settings = Settings.from_env(environ)
    assert settings.secret_key == bytes.fromhex(SECRET) and settings.database.role == "app"
    read_secret_files(environ)  # twice (the CLI, then a worker): nothing left to read, no conflict
    assert environ["LEDGERLINE_SECRET_KEY"] == SECRET


def test_every_secret_setting_has_a_file_variant() -> None:
    assert {"LEDGERLINE_SECRET_KEY", "LEDGERLINE_AUDIT_SIGNING_KEY", "LEDGERLINE_DATABASE_URL",
            "LEDGERLINE_OWNER_DATABASE_URL", "LEDGERLINE_ADMIN_PASSWORD"} <= set(SECRET_SETTINGS)  # fmt: skip


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: {"LEDGERLINE_SECRET_KEY": SECRET, "LEDGERLINE_SECRET_KEY_FILE": f"{d}/key"}, "not both"),
        (lambda d: {"LEDGERLINE_SECRET_KEY_FILE": str(d / "missing")}, "cannot read"),
        (lambda d: {"LEDGERLINE_SECRET_KEY_FILE": str(d)}, "cannot read"),  # a directory
        (lambda d: {"LEDGERLINE_SECRET_KEY_FILE": str(d / "empty")}, "is empty"),
        (lambda d: {"LEDGERLINE_SECRET_KEY_FILE": str(d / "binary")}, "not UTF-8"),
        (lambda d: {"LEDGERLINE_SECRET_KEY_FILE": str(d / "huge")}, "larger than"),
    ],
)
def test_a_file_that_cannot_be_used_is_one_clear_error(tmp_path: Path, setup: object, message: str) -> None:
    (tmp_path / "key").write_text(SECRET)
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe" + SECRET.encode())
    (tmp_path / "huge").write_text(SECRET * 2000)
    environ = setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(SettingsError, match=message) as raised:
        read_secret_files(environ)
    assert "LEDGERLINE_SECRET_KEY" in str(raised.value) and SECRET not in str(raised.value)


def test_log_level_is_checked() -> None:
    assert Settings.from_env({"LEDGERLINE_LOG_LEVEL": "DEBUG"}).log_level == "debug"
    assert Settings.from_env({}).log_level == "info"
    with pytest.raises(SettingsError, match="LEDGERLINE_LOG_LEVEL must be one of"):
        Settings.from_env({"LEDGERLINE_LOG_LEVEL": "verbose"})
