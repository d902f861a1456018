"""The read side never stalls in silence: a projection that cannot apply an event says which one
and why (never with the personal data in it), everywhere an operator looks (`projections status`,
`/ready` of another process), keeps retrying with growing backoff while the others go on, and
carries on by itself once the event can be applied; a projection that stops moving while behind
makes `/ready` answer 503 after the stall window. The audit checkpointer is watched the same way:
the tree itself grows in each append's transaction, but a checkpointer that stops signing while
events arrive (the database away from it, a dead process) makes `/ready` 503 after the window.

The poison events are appended through `Identity` and the aggregates' own `trigger_event`,
bypassing every check of the API edge: an old event in the store, or a bug.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from domain.api_keys import ApiKey
from domain.users import User
from domain.values import PersonalData
from eventstore.audit_chain.checkpoints import Checkpointer, SignedCheckpoint
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build, build_app
from ledgerline.cli import cli
from projections import read_side
from projections.base import Positioned
from projections.rebuild import rebuild
from projections.runner import EventNotApplicableError
from projections.worker import Backoff, FollowingWorker, start_checkpointer, start_workers
from tests.conftest import TEST_SECRET, settings_for
from tests.integration.helpers import register

EMAIL = "victim.secret@example.com"
FULL_NAME = "Vic Secret-Person"
FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))  # past 9999 in UTC
RETRY = Backoff(first=0.01, cap=0.08)
READY_PATHS = ("/ready", "/api/v1/ready")
LEDGERLINE = str(Path(sys.executable).with_name("ledgerline"))


def wait_until(condition: Callable[[], Any], timeout: float = 20, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)
    return result


@dataclass
class Running:
    stop: threading.Event
    workers: list[FollowingWorker]

    def halt(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout=30)
        assert not any(worker.is_alive() for worker in self.workers)


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(components: Components, names: Sequence[str] = (), *, checkpointer: bool = True) -> Running:
        stop = threading.Event()
        chosen = [p for name, p in components.projections.items() if not names or name in names]
        workers: list[FollowingWorker] = [
            *start_workers(
                chosen,
                components.identity,
                components.engine,
                components.settings.database,
                stop,
                failure_backoff=RETRY,
            ),
        ]
        if checkpointer:
            database = components.settings.database
            workers.append(
                start_checkpointer(components.checkpointer(), database, stop, failure_backoff=RETRY)
            )
        started.append(Running(stop, workers))
        return started[-1]

    yield start
    for each in started:
        each.halt()


def settings_env(url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "LEDGERLINE_DATABASE_URL": url,
        "LEDGERLINE_DATA_DIR": str(data_dir),
        "LEDGERLINE_SECRET_KEY": TEST_SECRET,
        "LEDGERLINE_POOL_SIZE": "3",
        **extra,
    }


def append_poison(components: Components) -> dict[str, int]:
    """A victim, their key (whose description names them), and events the read side cannot
    hold: an expiry past year 9999 in UTC (both stores), a NUL in the name (PostgreSQL text).
    Returns the poison position per projection."""
    identity = components.identity
    victim = register(identity, "victim", email=EMAIL, full_name=FULL_NAME)
    issued = identity.issue_api_key(
        victim.id, name="ci", permissions={"users:read": True}, description=f"for {EMAIL} / {FULL_NAME}"
    )
    key = identity.get_api_key(issued.result.id)
    key.trigger_event(ApiKey.ExpiryChanged, expires_at=FAR_FUTURE)
    poison = {"api_keys": identity.save(key)[-1].notification.id}
    if components.settings.database.is_postgres:
        user = identity.get_user(victim.id)
        user.trigger_event(User.ProfileUpdated, full_name=PersonalData(victim.id, f"{FULL_NAME}\x00"))
        poison["users"] = identity.save(user)[-1].notification.id
    return poison


def failure_of(components: Components, name: str) -> read_side.Failure | None:
    return {row.name: row for row in read_side.status(components.engine, components.identity)}[name].failure


def previous_position(components: Components, position: int) -> int:
    """The position of the last event stored before ``position``."""
    stored = components.identity.recorder.select_notifications(1, position, stop=position - 1)
    return stored[-1].id


def logged_text(records: list[logging.LogRecord]) -> str:
    """Everything a log handler could write of these records: messages, arguments, extras,
    exception text and traceback."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(vars(record)))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
        if record.stack_info:
            parts.append(record.stack_info)
    return "\n".join(parts)


def ready_bodies(components: Components) -> list[tuple[int, dict[str, Any]]]:
    with TestClient(app=build_app(components, watch_credentials=False)) as client:
        return [(r.status_code, r.json()) for r in (client.get(path) for path in READY_PATHS)]


def skip_positions(positions: set[int]) -> Callable[..., None]:
    """A "code fix" for a projection instance: it no longer chokes on those events."""

    def patch(projection: Any) -> None:
        original = projection.apply

        def fixed(conn: Any, tables: Any, events: Sequence[Positioned]) -> None:
            original(conn, tables, [item for item in events if item.position not in positions])

        projection.apply = fixed

    return patch


def test_a_poison_event_is_reported_everywhere_without_personal_data_and_retried(
    components: Components,
    database_url: str,
    tmp_path: Path,
    fast_passwords: Passwords,
    caplog: pytest.LogCaptureFixture,
    running: Callable[..., Running],
) -> None:
    caplog.set_level(logging.DEBUG)
    poison = append_poison(components)
    running(components)

    # The failure is recorded with the event's position and the error's type...
    failures = {
        name: wait_until(lambda name=name: (f := failure_of(components, name)) and f.attempts >= 6 and f)
        for name in poison
    }
    assert failures["api_keys"].position == poison["api_keys"]
    assert failures["api_keys"].error_type == "OverflowError"
    if "users" in poison:
        assert failures["users"].position == poison["users"]
        assert failures["users"].error_type == "DataError"
    # ...the projection applied everything before it and stays just behind it...
    positions = read_side.positions(components.engine)
    for name, position in poison.items():
        assert positions[name] == previous_position(components, position), name

    # ...while the others keep going.
    later = register(components.identity, "later").position
    healthy = [name for name in components.projections if name not in poison]
    assert read_side.wait_for_position(components.engine, later, timeout=20, names=tuple(healthy))
    wait_until(lambda: read_side.chain_status(components.engine, components.identity).position >= later)

    # It keeps retrying, waiting longer each time up to the cap.
    retries = [
        r for r in caplog.records if getattr(r, "projection", None) == "api_keys" and hasattr(r, "retry_in")
    ]
    assert [r.retry_in for r in retries[:5]] == [0.01, 0.02, 0.04, 0.08, 0.08]
    assert all(r.levelno >= logging.ERROR and r.position == poison["api_keys"] for r in retries)
    assert all(r.error_type == "OverflowError" for r in retries)
    wait_until(lambda: failure_of(components, "api_keys").attempts > failures["api_keys"].attempts)

    # Another process (its own components, as `ledgerline serve` would have) sees it in /ready...
    other = build(settings_for(database_url, tmp_path, LEDGERLINE_POOL_SIZE="3"), passwords=fast_passwords)
    try:
        for status_code, body in ready_bodies(other):
            assert status_code == 503
            failed = {check["name"]: check for check in body["failed"]}
            assert failed.keys() == poison.keys()
            assert failed["api_keys"]["reason"] == "failing"
            assert failed["api_keys"]["failure"]["position"] == poison["api_keys"]
            assert failed["api_keys"]["failure"]["error_type"] == "OverflowError"
            assert EMAIL not in str(body) and FULL_NAME not in str(body)
    finally:
        other.close()

    # ...and in `ledgerline projections status`.
    shown = CliRunner().invoke(cli, ["projections", "status"], env=settings_env(database_url, tmp_path))
    assert shown.exit_code == 0, shown.output
    line = next(line for line in shown.output.splitlines() if line.startswith("api_keys"))
    assert "failing" in line and f"position {poison['api_keys']}" in line and "OverflowError" in line
    assert EMAIL not in shown.output and FULL_NAME not in shown.output

    # No log line carries the victim's e-mail or name (messages, arguments, tracebacks).
    text = logged_text(caplog.records)
    assert EMAIL not in text and FULL_NAME not in text and "Vic Secret" not in text
    assert "victim.secret" not in text

    # A deploy that fixes the projection: it moves past the event by itself and the failure clears.
    for name in poison:
        skip_positions(set(poison.values()))(components.projections[name])
    head = components.identity.head_position()
    assert read_side.wait_for_position(components.engine, head, timeout=20)
    wait_until(lambda: all(failure_of(components, name) is None for name in poison))
    wait_until(lambda: read_side.chain_status(components.engine, components.identity).position >= head)
    assert all(status_code == 200 for status_code, _ in ready_bodies(components))


def test_a_rebuild_names_the_event_it_cannot_apply_and_nothing_of_its_data(components: Components) -> None:
    poison = append_poison(components)
    with pytest.raises(EventNotApplicableError) as raised:
        rebuild(components.projections["api_keys"], components.identity, components.engine)
    error = raised.value
    assert (error.projection, error.position, error.error_type) == (
        "api_keys",
        poison["api_keys"],
        "OverflowError",
    )
    assert error.__cause__ is None and error.__context__ is None  # the original (with parameters) stays out
    assert EMAIL not in str(error) and FULL_NAME not in str(error)


def test_a_projection_that_stops_while_behind_makes_ready_fail_after_the_stall_window(
    database_url: str, tmp_path: Path, fast_passwords: Passwords, running: Callable[..., Running]
) -> None:
    settings = settings_for(
        database_url, tmp_path, LEDGERLINE_POOL_SIZE="3", LEDGERLINE_READY_STALL_SECONDS="2"
    )
    components = build(settings, init=True, passwords=fast_passwords)
    try:
        owner: UUID = register(components.identity, "owner").id
        others = running(components, ("users", "audit_log"))
        keys = running(components, ("api_keys",), checkpointer=False)
        head = components.identity.head_position()
        assert read_side.wait_for_position(components.engine, head, timeout=20)
        wait_until(lambda: read_side.chain_status(components.engine, components.identity).position >= head)
        assert {code for code, _ in ready_bodies(components)} == {200}

        # The api_keys worker stops; events keep arriving. Behind but within the window: ready.
        keys.halt()
        components.identity.issue_api_key(owner, name="one", permissions={"users:read": True})
        assert {code for code, _ in ready_bodies(components)} == {200}

        # Behind and not moving for the window: 503 naming it, for as long as it stays so.
        stalled = wait_until(lambda: (bodies := ready_bodies(components))[0][0] == 503 and bodies, timeout=15)
        for status_code, body in stalled:
            assert status_code == 503
            assert [(c["name"], c["reason"]) for c in body["failed"]] == [("api_keys", "stalled")]
        shown = read_side.status(components.engine, components.identity, stall_seconds=2)
        status = {row.name: row for row in shown}
        assert status["api_keys"].state == "stalled"
        assert status["users"].state == "caught-up"

        # The worker comes back: it catches up and the API is ready again.
        running(components, ("api_keys",), checkpointer=False)
        head = components.identity.head_position()
        assert read_side.wait_for_position(components.engine, head, timeout=20)
        wait_until(lambda: read_side.chain_status(components.engine, components.identity).position >= head)
        assert {code for code, _ in ready_bodies(components)} == {200}

        # The audit checkpointer is watched the same way (it stops with the others).
        others.halt()
        register(components.identity, "unsigned")
        # The three cross the stall window milliseconds apart: wait until all of them have.
        expected = {"users": "stalled", "audit_log": "stalled", "audit_checkpoints": "stalled"}

        def failed(bodies: list[tuple[int, Any]]) -> dict[str, str]:
            return {c["name"]: c["reason"] for c in bodies[0][1].get("failed", [])}

        def all_three() -> list[tuple[int, Any]] | None:
            bodies = ready_bodies(components)
            return bodies if bodies[0][0] == 503 and failed(bodies) == expected else None

        stalled = wait_until(all_three, timeout=15)
        assert all(code == 503 and failed([(code, body)]) == expected for code, body in stalled)
        assert stalled[0][1]["checks"]["audit_chain"]["name"] == "audit_checkpoints"
    finally:
        components.close()


def test_a_projection_further_behind_than_the_bound_is_not_ready_at_once(
    database_url: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    settings = settings_for(database_url, tmp_path, LEDGERLINE_POOL_SIZE="3", LEDGERLINE_READY_MAX_LAG="2")
    components = build(settings, init=True, passwords=fast_passwords)
    try:
        for name in ("a1", "a2", "a3"):
            register(components.identity, name)
        for status_code, body in ready_bodies(components):
            assert status_code == 503
            reasons = {c["name"]: c["reason"] for c in body["failed"]}
            # Not the checkpoints: every event is in the tree at commit, and a checkpoint trails
            # it by design (an interval's worth of events); only a stalled checkpointer counts.
            assert reasons == dict.fromkeys(["api_keys", "audit_log", "users"], "lagging")
    finally:
        components.close()


def test_a_real_projector_process_reports_its_poison_event_to_other_processes(
    pg_database: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    """`ledgerline project` as operators run it (JSON logs on stderr), `projections status` and
    `/ready` from other processes, on PostgreSQL."""
    components = build(
        settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE="3"), init=True, passwords=fast_passwords
    )
    env = {**os.environ, **settings_env(pg_database, tmp_path)}
    log_path = tmp_path / "project.log"
    try:
        poison = append_poison(components)
        with log_path.open("wb") as log:
            process = subprocess.Popen([LEDGERLINE, "project"], env=env, stdout=log, stderr=log)
            try:
                wait_until(lambda: all(failure_of(components, name) for name in poison), timeout=60)
                shown = subprocess.run(
                    [LEDGERLINE, "projections", "status"], env=env, capture_output=True, text=True, timeout=60
                )
                assert shown.returncode == 0, shown.stderr
                for name, position in poison.items():
                    line = next(line for line in shown.stdout.splitlines() if line.startswith(name))
                    assert "failing" in line and f"position {position}" in line, line
                for status_code, body in ready_bodies(components):
                    assert status_code == 503
                    assert {c["name"] for c in body["failed"]} == set(poison)
            finally:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=30) == 0
        logged = log_path.read_text()
        assert "cannot apply the event at position" in logged
        assert EMAIL not in logged and FULL_NAME not in logged and "victim.secret" not in logged
    finally:
        components.close()


def test_a_checkpointer_that_cannot_sign_makes_ready_fail_after_the_stall_window(
    database_url: str,
    tmp_path: Path,
    fast_passwords: Passwords,
    caplog: pytest.LogCaptureFixture,
    running: Callable[..., Running],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every event is in the tree from its commit (nothing for a worker to fail to apply), but the
    checkpointer can lose the database: events then wait behind its last signed checkpoint, and
    once they have for the stall window `/ready` is 503 naming it, while the projections serve."""
    caplog.set_level(logging.DEBUG)
    settings = settings_for(
        database_url, tmp_path, LEDGERLINE_POOL_SIZE="3", LEDGERLINE_READY_STALL_SECONDS="2"
    )
    components = build(settings, init=True, passwords=fast_passwords)
    try:
        register(components.identity, "first")
        running(components)
        head = components.identity.head_position()
        signed = wait_until(lambda: (chain := chain_of(components)).position >= head and chain)
        assert signed.state == "caught-up"
        assert {code for code, _ in ready_bodies(components)} == {200}

        def away(self: Checkpointer) -> SignedCheckpoint | None:
            raise psycopg.OperationalError(f"connection lost while signing for {EMAIL}")

        monkeypatch.setattr(Checkpointer, "run_once", away)
        behind = register(components.identity, "victim", email=EMAIL, full_name=FULL_NAME).position
        assert read_side.wait_for_position(components.engine, behind, timeout=20)  # the projections serve
        chain = chain_of(components)
        assert (chain.position, chain.state) == (signed.position, "catching-up")  # within the window: ready
        assert {code for code, _ in ready_bodies(components)} == {200}

        stalled = wait_until(lambda: (bodies := ready_bodies(components))[0][0] == 503 and bodies, timeout=15)
        for status_code, body in stalled:
            assert status_code == 503
            assert [(c["name"], c["reason"]) for c in body["failed"]] == [("audit_checkpoints", "stalled")]
            check = body["checks"]["audit_chain"]
            assert (check["position"], check["lag"]) == (signed.position, behind - signed.position)
            assert EMAIL not in str(body)
        env = settings_env(database_url, tmp_path, LEDGERLINE_READY_STALL_SECONDS="2")
        shown = CliRunner().invoke(cli, ["projections", "status"], env=env)
        assert shown.exit_code == 0, shown.output
        line = next(line for line in shown.output.splitlines() if line.startswith("audit_checkpoints"))
        assert line.split()[-1] == "stalled", line
        logged = [r for r in caplog.records if getattr(r, "projection", None) == "audit_checkpoints"]
        assert any(r.error_type == "OperationalError" for r in logged if hasattr(r, "error_type"))
        assert EMAIL not in logged_text(caplog.records)

        monkeypatch.undo()  # the database is back: it signs the tree as it stands and is ready again
        head = components.identity.head_position()
        wait_until(lambda: chain_of(components).position >= head)
        assert chain_of(components).state == "caught-up"
        assert {code for code, _ in ready_bodies(components)} == {200}
    finally:
        components.close()


def test_a_checkpointer_waiting_out_its_interval_is_not_stalled(
    database_url: str, tmp_path: Path, fast_passwords: Passwords, running: Callable[..., Running]
) -> None:
    """A checkpoint is due only ``LEDGERLINE_CHECKPOINT_SECONDS`` after the last one: events that
    wait for it (steadily arriving, or one after a quiet spell) are not a stall, even with a
    stall window shorter than the interval, and the checkpoint comes when it is due."""
    settings = settings_for(
        database_url,
        tmp_path,
        LEDGERLINE_POOL_SIZE="3",
        LEDGERLINE_READY_STALL_SECONDS="1",
        LEDGERLINE_CHECKPOINT_SECONDS="3",
    )
    components = build(settings, init=True, passwords=fast_passwords)
    try:
        register(components.identity, "first")
        running(components)
        head = components.identity.head_position()
        wait_until(lambda: chain_of(components, 1).position >= head)

        def ready_throughout(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                assert chain_of(components, 1).state != "stalled"
                for status_code, body in ready_bodies(components):
                    assert status_code == 200, body["failed"]
                time.sleep(0.1)

        time.sleep(3.5)  # a quiet spell longer than the interval: the next checkpoint is due at once
        one = register(components.identity, "after-a-quiet-spell").position
        ready_throughout(1.5)
        assert chain_of(components, 1).position >= one

        for n in range(8):  # events steadily arriving: one checkpoint every 3 s covers them
            register(components.identity, f"steady{n}")
            ready_throughout(0.5)
        assert chain_of(components, 1).position > one
    finally:
        components.close()


def chain_of(components: Components, stall_seconds: float = 2) -> read_side.ProjectionStatus:
    settings = components.settings
    return read_side.chain_status(
        components.engine,
        components.identity,
        stall_seconds=stall_seconds,
        interval=settings.checkpoint_seconds,
    )


def test_the_rebuild_command_names_the_event_in_one_line(components: Components, tmp_path: Path) -> None:
    from tests.integration.test_cli import run

    poison = append_poison(components)
    done = run(components.settings.database.url, tmp_path, "projections", "rebuild", "api_keys")

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: api_keys cannot apply the event at position {poison['api_keys']} (OverflowError)"
    )
    assert "Traceback" not in done.stderr
    assert EMAIL not in done.stdout + done.stderr and FULL_NAME not in done.stdout + done.stderr
