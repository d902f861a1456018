"""PostgreSQL, two roles: ``db init`` runs as the schema's owner (LEDGERLINE_OWNER_DATABASE_URL) and
the API and projector run as a role that can append evidence but never rewrite it. Every attack
here is made with the runtime role's own credentials, as someone holding the application's
database URL would: each rewrite of events, snapshots, the log's tree nodes or its checkpoints is
refused, and so is every way around the append-only triggers. What the role may do, append, it
cannot do unseen: an event it inserts around the tree is named by ``verify``."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.exc import DBAPIError

from eventstore.database import writing
from eventstore.passwords import Passwords
from eventstore.schema import EVIDENCE_TABLES, RuntimeRoleError
from ledgerline.bootstrap import Components, build
from ledgerline.settings import SettingsError
from projections.rebuild import rebuild
from tests.api.processes import FAST_ARGON2_ENV, LEDGERLINE, serving
from tests.conftest import PG_ADMIN_DSN, TEST_SECRET, _pg_url, require_postgres, settings_for
from tests.integration.helpers import project_all, register, user_context
from tests.integration.merkle_attacks import positions, sign, tree_size, verify

POOL = {"LEDGERLINE_POOL_SIZE": "3"}


@dataclass(frozen=True)
class Roles:
    owner: str
    runtime: str
    owner_url: str
    runtime_url: str


@pytest.fixture
def roles() -> Iterator[Roles]:
    """Two login roles made for this test (roles are cluster-wide: unique names), and a database
    owned by the first; all dropped afterwards, the database first (it holds their grants)."""
    require_postgres()
    tag = uuid.uuid4().hex[:10]
    owner, runtime, name = f"ll_owner_{tag}", f"ll_app_{tag}", f"ledgerline_roles_{os.getpid()}_{tag}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(runtime)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        )
    base = _pg_url(PG_ADMIN_DSN, name).split("://", 1)[1].split("@", 1)[1]
    try:
        yield Roles(owner, runtime, f"postgresql://{owner}@{base}", f"postgresql://{runtime}@{base}")
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (runtime, owner):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def runtime_settings(roles: Roles, tmp_path: Path):  # type: ignore[no-untyped-def]
    return settings_for(roles.runtime_url, tmp_path, LEDGERLINE_OWNER_DATABASE_URL=roles.owner_url, **POOL)


@pytest.fixture
def app(roles: Roles, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Components]:
    """Initialised by the owner, then built as the runtime role (as ``serve`` and ``project`` are),
    with real commands run: users, 55 changes (a snapshot), a key, projections, a checkpoint."""
    build(runtime_settings(roles, tmp_path), init=True, passwords=fast_passwords).close()
    components = build(settings_for(roles.runtime_url, tmp_path, **POOL), passwords=fast_passwords)
    try:
        identity = components.identity
        alice = register(identity, "alice")
        with user_context(alice.id):
            for n in range(55):
                identity.update_user(alice.id, full_name=f"Alice {n}")
            identity.issue_api_key(alice.id, name="ci", permissions={"users:read": True})
        project_all(components)
        sign(components)
        yield components
    finally:
        components.close()


def run_as_runtime(components: Components, statement: str) -> str:
    """The statement's SQLSTATE (it must fail); the transaction is rolled back either way."""
    with components.engine.connect() as conn:
        try:
            conn.exec_driver_sql(statement)
        except DBAPIError as error:
            return str(getattr(error.orig, "sqlstate", ""))
        finally:
            conn.rollback()
    raise AssertionError(f"the runtime role was allowed: {statement}")


def fingerprint(components: Components) -> dict[str, int]:
    with components.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in EVIDENCE_TABLES}


# The evidence and a column of each: named here, so a table dropped from EVIDENCE_TABLES is noticed.
EVIDENCE = {"identity_events": "state", "identity_snapshots": "state", "audit_tree_nodes": "hash",
            "audit_tree_checkpoints": "note"}  # fmt: skip
REWRITES = [
    *(f"UPDATE {t} SET {c} = {c}" for t, c in EVIDENCE.items()),
    *(f"DELETE FROM {t}" for t in EVIDENCE_TABLES),
    *(f"TRUNCATE {t}" for t in EVIDENCE_TABLES),
    *(f"ALTER TABLE {t} DISABLE TRIGGER ALL" for t in EVIDENCE_TABLES),
    *(f"ALTER TABLE {t} DISABLE TRIGGER {t}_append_only" for t in EVIDENCE_TABLES),
    *(f"DROP TRIGGER {t}_append_only ON {t}" for t in EVIDENCE_TABLES),
    *(f"DROP TABLE {t}" for t in EVIDENCE_TABLES),
    *(f"ALTER TABLE {t} RENAME TO {t}_old" for t in EVIDENCE_TABLES),
    *(f"ALTER TABLE {t} OWNER TO CURRENT_USER" for t in EVIDENCE_TABLES),
    # An upsert is an UPDATE: a stored node or checkpoint cannot be replaced by re-inserting it.
    "INSERT INTO audit_tree_nodes (level, idx, hash) SELECT level, idx, hash FROM audit_tree_nodes"
    " ON CONFLICT (level, idx) DO UPDATE SET hash = sha256(excluded.hash)",
    "INSERT INTO audit_tree_checkpoints SELECT * FROM audit_tree_checkpoints"
    " ON CONFLICT (tree_size) DO UPDATE SET note = excluded.note || ' '",
    "SET LOCAL session_replication_role = replica",
    "SET session_replication_role = replica",
    "SELECT setval('identity_events_notification_id_seq', 1)",
    "CREATE OR REPLACE FUNCTION ledgerline_append_only() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN NEW; END $$",
]


def test_the_evidence_tables_are_the_events_snapshots_tree_and_checkpoints() -> None:
    assert set(EVIDENCE_TABLES) == set(EVIDENCE)


@pytest.mark.parametrize("statement", REWRITES)
def test_every_rewrite_of_the_evidence_is_refused_to_the_runtime_role(
    app: Components, statement: str
) -> None:
    before = fingerprint(app)
    assert run_as_runtime(app, statement) == "42501"  # insufficient_privilege (or the trigger's own)
    assert fingerprint(app) == before


def test_the_runtime_role_owns_no_evidence_and_holds_no_rewrite_rights(app: Components, roles: Roles) -> None:
    with app.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() == roles.runtime
        assert (
            conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
            is False
        )
        for table in EVIDENCE_TABLES:
            owner = conn.execute(
                sa.text("SELECT tableowner FROM pg_tables WHERE tablename = :t"), {"t": table}
            )
            assert owner.scalar_one() == roles.owner
            rights = {
                right: conn.execute(
                    sa.text("SELECT has_table_privilege(current_user, :t, :r)"), {"t": table, "r": right}
                ).scalar_one()
                for right in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES")
            }
            # UPDATE on the events table only: the library's LOCK TABLE ... IN EXCLUSIVE MODE needs
            # it; the append-only trigger (which this role cannot touch) refuses every UPDATE.
            expected_update = table == "identity_events"
            assert rights == {
                "SELECT": True, "INSERT": True, "UPDATE": expected_update,
                "DELETE": False, "TRUNCATE": False, "TRIGGER": False, "REFERENCES": False,
            }, table  # fmt: skip
    with app.engine.connect() as conn:  # what the UPDATE right is for: the recorder's position lock
        conn.exec_driver_sql("LOCK TABLE identity_events IN EXCLUSIVE MODE")
        conn.rollback()


def test_commands_projections_a_rebuild_and_an_erasure_work_as_the_runtime_role(app: Components) -> None:
    identity = app.identity
    admin = register(identity, "root", is_superuser=True)
    bob = register(identity, "bob")
    with user_context(admin.id):
        identity.erase_user(bob.id)
    project_all(app)
    rebuilt = rebuild(app.projections["audit_log"], identity, app.engine)  # new tables, old ones dropped
    assert rebuilt == 2
    project_all(app)
    sign(app)
    with app.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one() > 55
        assert conn.execute(sa.text("SELECT to_regclass('audit_log_g1')")).scalar_one() is None
    report = verify(app)
    assert report.ok and report.checkpoints_verified == 2 and report.tree_size == tree_size(app), report


def test_an_event_the_runtime_role_inserts_around_the_tree_is_named(app: Components) -> None:
    with writing(app.engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO identity_events (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version + 1000, topic, state FROM identity_events"
            " WHERE notification_id = 1"
        )
    forged = positions(app)[-1]
    report = verify(app)
    assert not report.ok and report.first_bad_position == forged
    assert "not in the tree" in (report.reason or "")


def test_the_runtime_role_appends_the_tree_it_cannot_rewrite(app: Components) -> None:
    """Its appends extend the tree and verify: the INSERT right on the tree is what they need."""
    report = verify(app)
    assert report.ok and report.tree_size == positions(app)[-1] == app.identity.head_position(), report


def test_db_init_again_as_owner_keeps_the_runtime_role_working(
    app: Components, roles: Roles, tmp_path: Path, fast_passwords: Passwords
) -> None:
    rebuild(app.projections["users"], app.identity, app.engine)  # a generation the runtime role owns
    build(runtime_settings(roles, tmp_path), init=True, passwords=fast_passwords).close()
    register(app.identity, "carol")
    project_all(app)
    assert run_as_runtime(app, "DELETE FROM identity_events") == "42501"


def test_a_database_one_role_made_is_split_and_the_runtime_role_can_rebuild(
    roles: Roles, tmp_path: Path, fast_passwords: Passwords
) -> None:
    before = build(settings_for(roles.owner_url, tmp_path, **POOL), init=True, passwords=fast_passwords)
    register(before.identity, "alice")  # made with one role owning everything, read models too
    before.close()
    split = runtime_settings(roles, tmp_path)
    with pytest.raises(RuntimeRoleError, match="member"):  # it cannot hand the read models over yet
        build(split, init=True, passwords=fast_passwords).close()
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(roles.runtime), sql.Identifier(roles.owner))
        )
    build(split, init=True, passwords=fast_passwords).close()
    after = build(settings_for(roles.runtime_url, tmp_path, **POOL), passwords=fast_passwords)
    try:
        for projection in after.projections.values():
            rebuild(projection, after.identity, after.engine)  # drops the tables the owner made
        register(after.identity, "bob")
        project_all(after)
        with after.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 2
        assert run_as_runtime(after, "DELETE FROM identity_events") == "42501"
    finally:
        after.close()


def test_a_superuser_runtime_role_is_refused_by_db_init(roles: Roles, tmp_path: Path) -> None:
    superuser_url = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + roles.owner_url.rsplit("/", 1)[1]
    settings = settings_for(superuser_url, tmp_path, LEDGERLINE_OWNER_DATABASE_URL=roles.owner_url, **POOL)
    with pytest.raises(RuntimeRoleError, match="superuser"):
        build(settings, init=True).close()


def test_serve_and_project_as_the_runtime_role_answer_commands(roles: Roles, tmp_path: Path) -> None:
    env = {
        **os.environ,
        **FAST_ARGON2_ENV,
        **POOL,
        "LEDGERLINE_DATABASE_URL": roles.runtime_url,
        "LEDGERLINE_OWNER_DATABASE_URL": roles.owner_url,
        "LEDGERLINE_SECRET_KEY": TEST_SECRET,
        "LEDGERLINE_DATA_DIR": str(tmp_path),
    }
    init = subprocess.run([LEDGERLINE, "db", "init"], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    assert roles.owner_url not in init.stdout + init.stderr
    runtime_env = {"LEDGERLINE_OWNER_DATABASE_URL": "", **FAST_ARGON2_ENV, **POOL}
    key = subprocess.run(  # with the runtime role only, as the services have it
        [LEDGERLINE, "create-admin", "--username", "root", "--email", "root@example.com"],
        env={**env, **runtime_env, "LEDGERLINE_ADMIN_PASSWORD": "Correct-Horse-9"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert key.returncode == 0, key.stderr
    log = (tmp_path / "project.log").open("wb")
    projector = subprocess.Popen([LEDGERLINE, "project"], env={**env, **runtime_env}, stdout=log, stderr=log)
    try:
        with (
            serving(roles.runtime_url, tmp_path, 1, runtime_env) as ([url], _),
            httpx.Client(timeout=5) as client,
        ):
            headers = {"X-API-Key": key.stdout.strip().splitlines()[-1]}
            created = client.post(
                f"{url}/api/v1/users",
                headers=headers,
                json={"username": "dana", "email": "dana@example.com", "password": "Correct-Horse-9"},
            )
            assert created.status_code == 201, created.text
            deadline = time.monotonic() + 30
            while "dana" not in client.get(f"{url}/api/v1/users", headers=headers).text:
                assert time.monotonic() < deadline, "the projector (runtime role) never showed the new user"
                time.sleep(0.2)
            assert client.get(f"{url}/api/v1/audit-logs", headers=headers).status_code == 200
        assert projector.poll() is None, (tmp_path / "project.log").read_text()
    finally:
        projector.terminate()
        projector.wait(timeout=30)


@pytest.mark.parametrize(
    ("owner_url", "problem"),
    [
        ("sqlite:///tmp/x.sqlite3", "needs PostgreSQL"),
        ("postgresql://owner:s3cret-pw@127.0.0.1:5432/another", "same server and database"),
        ("postgresql://app:s3cret-pw@127.0.0.1:5432/ledgerline", "another role"),
    ],
)
def test_an_owner_url_that_cannot_be_the_owner_is_a_clear_error_without_its_password(
    owner_url: str, problem: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match=problem) as raised:
        settings_for(
            "postgresql://app:app-pw@127.0.0.1:5432/ledgerline",
            tmp_path,
            LEDGERLINE_OWNER_DATABASE_URL=owner_url,
        )
    assert "s3cret-pw" not in str(raised.value) and "app-pw" not in str(raised.value)


def test_the_runtime_role_keeps_the_stream_cursors(app: Components) -> None:
    """The deliverer runs as the runtime role: it creates, moves and annotates its cursors."""
    from projections.streaming import cursors

    assert cursors.open_cursor(app.engine, "subscription:runtime", 4) == 4
    cursors.advance(app.engine, "subscription:runtime", 4, 9, delivered=3)
    cursors.note_failure(app.engine, "subscription:runtime", "HTTP 503")
    with app.engine.connect() as conn:
        state = cursors.cursor_states(conn)["subscription:runtime"]
    assert (state.delivered_through, state.delivered, state.failed, state.last_error) == (9, 3, 1, "HTTP 503")
    with pytest.raises(cursors.CursorMovedError):  # another deliverer moved it first
        cursors.advance(app.engine, "subscription:runtime", 4, 12, delivered=1)
