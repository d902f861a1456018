"""One place that turns a database URL into what each library needs (eventsourcing, SQLAlchemy)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import sqlalchemy as sa
import sqlalchemy.exc
from eventsourcing.persistence import InterfaceError, OperationalError
from psycopg_pool import PoolTimeout
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

# What "the database is unreachable" looks like from each library: worth waiting and retrying
# (the API answers 503, projectors back off), never a verdict on the data being written.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # SQLAlchemy's own pool ran dry waiting for a connection
    PoolTimeout,
)


class DatabaseUrlError(ValueError):
    pass


@dataclass(frozen=True)
class Database:
    """A SQLite file or a PostgreSQL database, named by ``sqlite:///path`` or ``postgresql://``.

    ``group_commit`` (PostgreSQL only): concurrent saves of one process share one transaction
    (``eventstore.group_commit``). Every recorder extends the log's Merkle tree in the append's
    transaction (``eventstore.audit_chain.tree``).
    """

    url: str
    group_commit: bool = True

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite:")

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:"))

    def __post_init__(self) -> None:
        if not (self.is_sqlite or self.is_postgres):
            raise DatabaseUrlError(
                f"unsupported database URL {self.redacted()!r}: use sqlite:///PATH or postgresql://..."
            )
        if self.is_sqlite and not self.sqlite_path:
            raise DatabaseUrlError("a SQLite URL needs a file path: sqlite:///PATH")

    @property
    def sqlite_path(self) -> str:
        return self.url.split(":///", 1)[1] if ":///" in self.url else ""

    @property
    def events_table(self) -> str:
        return "stored_events" if self.is_sqlite else "identity_events"

    @property
    def snapshots_table(self) -> str:
        return "stored_snapshots" if self.is_sqlite else "identity_snapshots"

    @property
    def host(self) -> str | None:
        """The PostgreSQL server's host name (None for a SQLite file)."""
        return None if self.is_sqlite else urlsplit(self.url).hostname or "localhost"

    @property
    def role(self) -> str:
        """The PostgreSQL role this URL connects as (``eventsourcing_env`` uses the same default)."""
        return unquote(urlsplit(self.url).username or "postgres")

    def same_server_and_database(self, other: Database) -> bool:
        mine, theirs = urlsplit(self.url), urlsplit(other.url)
        return (mine.hostname, mine.port, mine.path) == (theirs.hostname, theirs.port, theirs.path)

    def redacted(self) -> str:
        parts = urlsplit(self.url)
        if parts.password:
            return self.url.replace(f":{parts.password}@", ":***@")
        return self.url

    def eventsourcing_env(self, *, create_table: bool, pool_size: int = 5) -> dict[str, str]:
        if self.is_sqlite:
            Path(self.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": self.sqlite_path,
                "SQLITE_LOCK_TIMEOUT": "30",
                "CREATE_TABLE": "y" if create_table else "n",
                "APPLICATION_RECORDER_TOPIC": "eventstore.sqlite_recorder:TreeSQLiteRecorder",
            }
        parts = urlsplit(self.url)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/"),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": self.role,
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "CREATE_TABLE": "y" if create_table else "n",
        }
        recorder = "GroupCommitRecorder" if self.group_commit else "OneSaveRecorder"
        env["APPLICATION_RECORDER_TOPIC"] = f"eventstore.group_commit:{recorder}"
        return env

    def sqlalchemy_url(self) -> str:
        if self.is_sqlite:
            return f"sqlite:///{self.sqlite_path}"
        return "postgresql+psycopg://" + self.url.split("://", 1)[1]

    def create_engine(self) -> Engine:
        if self.is_sqlite:
            Path(self.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(self.sqlalchemy_url(), connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            # pysqlite would commit before DDL (a view switch would not be atomic): let
            # SQLAlchemy's transactions be SQLite's own, DDL included. Writers begin IMMEDIATE
            # (see ``writing``): a deferred reader cannot upgrade once another write committed.
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return sa.create_engine(self.sqlalchemy_url(), pool_pre_ping=True, pool_size=5)


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front (waiting for
    it), instead of failing with "database is locked" when it first writes."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        yield conn


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}".strip())


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA secure_delete=ON")  # erased data keys leave no bytes behind
    cursor.close()
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
