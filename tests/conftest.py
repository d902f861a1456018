"""Shared fixtures: one fresh database per test, on SQLite and on real PostgreSQL.

PostgreSQL is on 127.0.0.1:5432 (trust auth, user root). Under CI=true a missing server fails
the run; elsewhere the PostgreSQL tests skip with the reason shown.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from eventstore.passwords import Argon2Parameters, Passwords
from ledgerline.bootstrap import Components, build
from ledgerline.settings import Settings

PG_ADMIN_DSN = os.environ.get("LEDGERLINE_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_SECRET = "11" * 32
FAST_ARGON2 = Argon2Parameters(memory_kib=1024, time_cost=1, parallelism=1)


def _postgres_unavailable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {error}"


_PG_PROBLEM = _postgres_unavailable()


def require_postgres() -> None:
    if _PG_PROBLEM is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {_PG_PROBLEM}", pytrace=False)
    pytest.skip(_PG_PROBLEM)


def _pg_url(dsn: str, dbname: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + dbname


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped afterwards. Yields its URL."""
    require_postgres()
    name = f"ledgerline_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _pg_url(PG_ADMIN_DSN, name)
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def settings_for(url: str, data_dir: Path, **extra: str) -> Settings:
    env = {
        "LEDGERLINE_DATABASE_URL": url,
        "LEDGERLINE_DATA_DIR": str(data_dir),
        "LEDGERLINE_SECRET_KEY": TEST_SECRET,
        # Each PostgreSQL store opens its whole pool at once; the server allows ~100 connections
        # in all, shared by `make test`'s test processes: a small pool (tests that need more say so).
        "LEDGERLINE_POOL_SIZE": os.environ.get("LEDGERLINE_TEST_POOL_SIZE", "4"),
        "LEDGERLINE_USAGE_FLUSH_MS": "200",
        **extra,
    }
    return Settings.from_env(env)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledgerline.sqlite3'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def fast_passwords() -> Passwords:
    return Passwords(FAST_ARGON2)


@pytest.fixture
def components(database_url: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Components]:
    built = build(settings_for(database_url, tmp_path), init=True, passwords=fast_passwords)
    try:
        yield built
    finally:
        built.close()
