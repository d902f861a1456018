"""``ledgerline audit witness`` against the real API (the Litestar app in this process, and a real
``serve`` process), on SQLite and PostgreSQL: a grown log is accepted on a verified consistency
proof; a log its owner rewrote, truncated or re-signed with another key is refused with the
refused note kept and DIR/latest untouched; a fork whose consistency proof is withheld is held
pending, then refused; a proof for other sizes is refused at once; a DIR changed behind the
witness's back stops it (exit 2); the sinks get each accepted checkpoint once.

NATS JetStream is on 127.0.0.1:4222 (``.ci/run`` starts it); under CI=true a missing server fails
the NATS tests, elsewhere they skip with the reason shown. Each test's log has its own origin,
so its subject and message ids are its own; its messages are purged afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy.engine import Connection

from eventstore.audit_chain.merkle import CompactRange
from eventstore.audit_chain.note import Checkpoint, NoteSigner, parse_note, sign_checkpoint
from eventstore.audit_chain.records import leaf_hashes, read_records
from eventstore.audit_chain.tree import node_reader, stored_size
from eventstore.database import writing
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build, build_app
from ledgerline.checkpoint_sinks import STREAM, NatsSink, subject_for
from ledgerline.witness import witness
from projections.worker import FollowingWorker, start_workers
from tests.api.processes import FAST_ARGON2_ENV, LEDGERLINE, serving
from tests.conftest import IN_CI, settings_for
from tests.integration.helpers import register

NATS_URL = os.environ.get("LEDGERLINE_TEST_NATS", "nats://127.0.0.1:4222")
BASE_URL = "http://testserver.local"
QUIET_USAGE = {"LEDGERLINE_USAGE_FLUSH_MS": "60000"}


@functools.cache
def _nats_problem() -> str | None:
    host, _, port = NATS_URL.rpartition("//")[2].partition(":")
    try:
        with socket.create_connection((host, int(port or 4222)), timeout=3) as sock:
            info = sock.recv(4096)
    except OSError as error:
        return f"NATS not reachable at {NATS_URL}: {error}"
    if b'"jetstream":true' not in info:
        return f"NATS at {NATS_URL} runs without JetStream"
    return None


def require_nats() -> None:
    """As tests/conftest.py's require_postgres: under CI=true a missing NATS fails, never skips."""
    problem = _nats_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {problem}", pytrace=False)
    pytest.skip(problem)


@dataclass
class Log:
    components: Components
    client: TestClient[Any]
    key: str  # an admin's key holding audit_logs:read only
    origin: str
    url: str

    @property
    def vkey(self) -> str:
        return self.components.checkpoint_keys.signer.verifier_key.encode()

    def grow(self, users: int = 2) -> int:
        for _ in range(users):
            register(self.components.identity, f"u{uuid.uuid4().hex[:10]}")
        return self.size()

    def size(self) -> int:
        with self.components.engine.connect() as conn:
            return stored_size(conn)


@pytest.fixture
def log(database_url: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Log]:
    origin = f"ledgerline/witness-test-{uuid.uuid4().hex[:12]}"
    # Key usage is recorded as events: flushed at most once a minute, the log holds still.
    settings = settings_for(database_url, tmp_path, LEDGERLINE_AUDIT_ORIGIN=origin, **QUIET_USAGE)
    components = build(settings, init=True, passwords=fast_passwords)
    stop = threading.Event()
    workers: list[FollowingWorker] = []
    try:
        admin = register(components.identity, "root", is_superuser=True)
        scopes = {"audit_logs:read": True}
        key = components.identity.issue_api_key(admin.id, name="witness", permissions=scopes).key
        workers += start_workers(
            list(components.projections.values()),
            components.identity,
            components.engine,
            settings.database,
            stop,
        )
        with TestClient(app=build_app(components)) as client:
            yield Log(components, client, key, origin, database_url)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
        components.close()


def run(
    log: Log, directory: Path, *extra: str, vkey: str | None = None, client: httpx.Client | None = None
) -> tuple[int, str, str]:
    args = ["--url", BASE_URL, "--public-key", vkey or log.vkey, "--dir", str(directory), *extra]
    result = CliRunner().invoke(
        witness,
        args,
        obj={"http_client": client or log.client},
        env={"LEDGERLINE_WITNESS_API_KEY": log.key},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert log.key not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def accepted_size(directory: Path) -> int:
    return Checkpoint.parse(parse_note((directory / "latest").read_text()).text).size


# ---- the owner's moves (append-only triggers out of the way) ------------------------------------


@contextlib.contextmanager
def as_owner(log: Log) -> Iterator[Connection]:
    database = log.components.settings.database
    with writing(log.components.engine) as conn:
        if database.is_sqlite:
            for table in (database.events_table, "audit_tree_nodes", "audit_tree_checkpoints"):
                for operation in ("update", "delete"):
                    conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_{operation}"))
        else:  # the test role is a superuser: replication mode fires no ordinary trigger
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        yield conn


def _position(log: Log) -> str:
    return "rowid" if log.components.settings.database.is_sqlite else "notification_id"


def rewrite_event(log: Log, position: int) -> None:
    """Change one stored event's bytes, recompute every tree node from its leaf on, and drop the
    checkpoints (the API then signs a new one over the rewritten tree with the log's real key)."""
    database = log.components.settings.database
    table, column = database.events_table, _position(log)
    with as_owner(log) as conn:
        state = conn.execute(sa.text(f"SELECT state FROM {table} WHERE {column} = :p"), {"p": position})
        changed = bytes(state.scalar_one()) + b" "
        update = sa.text(f"UPDATE {table} SET state = :s WHERE {column} = :p")
        assert conn.execute(update, {"s": changed, "p": position}).rowcount == 1
        start = position - 1
        border = CompactRange.read(start, node_reader(conn))
        _, nodes = border.extend(leaf_hashes(read_records(conn, database, start, 10**9), start))
        delete_nodes_from(conn, start)
        conn.execute(
            sa.text("INSERT INTO audit_tree_nodes (level, idx, hash) VALUES (:level, :idx, :hash)"),
            [{"level": node.level, "idx": node.index, "hash": value} for node, value in nodes],
        )
        conn.execute(sa.text("DELETE FROM audit_tree_checkpoints"))


def delete_nodes_from(conn: Connection, start: int) -> None:
    """Every node over a leaf at index ``start`` or beyond."""
    for level in conn.execute(sa.text("SELECT DISTINCT level FROM audit_tree_nodes")).scalars().all():
        conn.execute(
            sa.text("DELETE FROM audit_tree_nodes WHERE level = :level AND idx >= :first"),
            {"level": level, "first": start >> level},
        )


def truncate(log: Log, keep: int) -> None:
    database = log.components.settings.database
    with as_owner(log) as conn:
        conn.execute(sa.text(f"DELETE FROM {database.events_table} WHERE {_position(log)} > :k"), {"k": keep})
        delete_nodes_from(conn, keep)
        conn.execute(sa.text("DELETE FROM audit_tree_checkpoints WHERE tree_size > :k"), {"k": keep})


# ---- accepted ------------------------------------------------------------------------------------


def test_first_run_accepts_then_a_grown_log_is_accepted_on_its_consistency_proof(
    log: Log, tmp_path: Path
) -> None:
    directory = tmp_path / "witness"
    asked: list[str] = []
    log.client.event_hooks["request"].append(lambda request: asked.append(request.url.path))
    code, out, err = run(log, directory)
    first = log.size()
    assert (code, err) == (0, "")
    origin, size, root = out.split()[1:]
    assert out.startswith("accepted ") and out.count("\n") == 1
    assert (origin, int(size)) == (log.origin, first)
    assert (directory / "origin").read_text() == f"{log.origin}\n"
    note = (directory / "latest").read_text()
    assert log.components.checkpoint_keys.open(note).size == first
    assert root == base64.b64encode(log.components.checkpoint_keys.open(note).root_hash).decode()
    assert (directory / "checkpoints" / str(first)).read_text() == note
    assert asked == ["/api/v1/audit-logs/checkpoint"]

    grown = log.grow(3)
    assert grown > first
    code, out, _ = run(log, directory)
    assert code == 0 and out.split()[2] == str(grown) and accepted_size(directory) == grown
    assert asked[1:] == ["/api/v1/audit-logs/checkpoint", "/api/v1/audit-logs/consistency"]
    assert sorted(int(p.name) for p in (directory / "checkpoints").iterdir()) == [first, grown]

    code, out, _ = run(log, directory)  # nothing new: the same tree, no proof needed
    assert code == 0 and out.split()[2] == str(grown) and asked[3:] == ["/api/v1/audit-logs/checkpoint"]
    assert not (directory / "rejected").exists()


# ---- refused -------------------------------------------------------------------------------------


def _refused(log: Log, directory: Path, kind: str, *extra: str, client: httpx.Client | None = None) -> None:
    latest = (directory / "latest").read_text()
    code, out, err = run(log, directory, *extra, client=client)
    assert (code, out) == (1, "") and err.startswith(f"rejected: {kind}: ") and err.count("\n") == 1, err
    assert (directory / "latest").read_text() == latest
    (kept,) = (directory / "rejected").glob("*.note")
    assert kept.read_text().startswith(f"{log.origin}\n") and f"kept as {kept}" in err


def test_a_log_rewritten_by_its_owner_after_growing_is_refused(log: Log, tmp_path: Path) -> None:
    directory = tmp_path / "witness"
    assert run(log, directory)[0] == 0
    log.grow(2)
    rewrite_event(log, position=2)  # inside the tree the witness accepted
    _refused(log, directory, "rewritten or forked")
    assert log.components.checkpoint_keys.open(next((directory / "rejected").glob("*.note")).read_text())


def test_a_log_rewritten_at_the_same_size_is_refused(log: Log, tmp_path: Path) -> None:
    directory = tmp_path / "witness"
    assert run(log, directory)[0] == 0
    rewrite_event(log, position=3)
    _refused(log, directory, "same size different root")


def test_a_truncated_log_is_refused(log: Log, tmp_path: Path) -> None:
    directory = tmp_path / "witness"
    log.grow(2)
    assert run(log, directory)[0] == 0
    truncate(log, keep=accepted_size(directory) - 2)
    _refused(log, directory, "truncated", "--publish-file", str(tmp_path / "sink.jsonl"))
    assert not (tmp_path / "sink.jsonl").exists()


def test_a_checkpoint_signed_with_another_key_is_refused(log: Log, tmp_path: Path) -> None:
    """The log's tree and name, another key (the API no longer serves such a stored row: the
    owner serves it from in front of the API)."""
    directory = tmp_path / "witness"
    assert run(log, directory)[0] == 0
    log.grow(1)
    served = log.client.get("/api/v1/audit-logs/checkpoint", headers={"X-API-Key": log.key})
    genuine = log.components.checkpoint_keys.open(served.text)
    other = NoteSigner(log.origin, b"\x42" * 32)  # the origin's name, not its key
    note = sign_checkpoint(Checkpoint(log.origin, genuine.size, genuine.root_hash), [other])
    _refused(log, directory, "unknown key", client=proxied(log, checkpoint=note))


def test_a_witness_trusting_another_key_accepts_nothing(log: Log, tmp_path: Path) -> None:
    other = NoteSigner(log.origin, b"\x43" * 32).verifier_key.encode()
    code, out, err = run(log, tmp_path / "witness", vkey=other)
    assert (code, out) == (1, "") and err.startswith("rejected: unknown key: ")
    assert not (tmp_path / "witness" / "latest").exists()


def proxied(log: Log, proofs: str = "given", checkpoint: str | None = None) -> httpx.Client:
    """The log as its owner can serve it from in front of the API: a checkpoint of their own, or
    the consistency route failing (``proofs``: "500", "refused") or answering for other sizes."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/checkpoint") and checkpoint is not None:
            return httpx.Response(200, text=checkpoint)
        if request.url.path.endswith("/consistency"):
            if proofs == "refused":
                raise httpx.ConnectError("connection refused", request=request)
            if proofs == "500":
                return httpx.Response(500, json={"status": 500, "detail": "Internal Server Error"})
        params = dict(request.url.params)
        if proofs == "other sizes" and "from" in params:
            params["from"] = str(int(params["from"]) - 1)
        served = log.client.get(request.url.path, params=params, headers={"X-API-Key": log.key})
        return httpx.Response(served.status_code, content=served.content, headers={"Content-Type": "x"})

    return httpx.Client(transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("how", ["500", "refused"])
def test_a_fork_whose_consistency_proof_is_withheld_is_held_then_refused(
    log: Log, tmp_path: Path, how: str
) -> None:
    directory = tmp_path / "witness"
    assert run(log, directory)[0] == 0
    first, latest = accepted_size(directory), (directory / "latest").read_text()
    log.grow(2)
    rewrite_event(log, position=2)  # a fork the log signs with its real key
    forked = log.size()
    gap = f"the log signed size {forked} but gives no consistency proof from {first} "
    code, out, err = run(log, directory, "--unlinked-rounds", "2", client=proxied(log, how))
    pending = directory / "pending" / f"{forked}.note"
    assert (code, out) == (4, "") and err.startswith(f"unlinked: {gap}") and err.count("\n") == 1, err
    assert err.endswith(f"kept as {pending} (round 1 of 2)\n")
    held = pending.read_text()
    assert log.components.checkpoint_keys.open(held).size == forked
    code, out, err = run(log, directory, "--unlinked-rounds", "2", client=proxied(log, how))
    assert (code, out) == (1, "") and err.startswith(f"rejected: unlinked: {gap}"), err
    (kept,) = (directory / "rejected").glob(f"{forked}-*.note")
    assert kept.read_text() == held and f"kept as {kept}" in err
    assert not pending.exists() and (directory / "latest").read_text() == latest
    code, _, err = run(log, directory, client=proxied(log, how))  # one run: refused at once
    assert code == 1 and err.startswith(f"rejected: unlinked: {gap}")
    code, _, err = run(log, directory)  # the proof, once given, fails: the fork it always was
    assert code == 1 and err.startswith(f"rejected: rewritten or forked: consistency proof {first} -> ")


def test_a_consistency_answer_for_other_sizes_is_refused_at_once(log: Log, tmp_path: Path) -> None:
    directory = tmp_path / "witness"
    assert run(log, directory)[0] == 0
    log.grow(1)
    code, out, err = run(log, directory, "--follow", "--interval", "0.05", client=proxied(log, "other sizes"))
    assert (
        (code, out) == (1, "")
        and err.startswith("rejected: bad consistency answer: ")
        and err.count("\n") == 1
    )
    assert not (directory / "pending").exists() and len(list((directory / "rejected").glob("*.note"))) == 1


def test_a_witness_dir_changed_behind_its_back_is_exit_2(log: Log, tmp_path: Path) -> None:
    """Whoever can write DIR rolls the witness back to a checkpoint of their own: it no longer
    opens with the trusted key, so the witness stops (exit 2) instead of trusting it."""
    directory = tmp_path / "witness"
    assert run(log, directory)[0] == 0
    kept = log.components.checkpoint_keys.open((directory / "latest").read_text())
    other = NoteSigner(log.origin, b"\x44" * 32)
    (directory / "latest").write_text(sign_checkpoint(Checkpoint(log.origin, 1, kept.root_hash), [other]))
    log.grow(1)
    code, out, err = run(log, directory)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"error: {directory}: {directory / 'latest'} does not open with the trusted keys")
    assert not (directory / "checkpoints" / str(log.size())).exists()


# ---- publishing ----------------------------------------------------------------------------------


def test_the_file_sink_gets_one_line_per_accepted_checkpoint(log: Log, tmp_path: Path) -> None:
    sink = tmp_path / "published" / "checkpoints.jsonl"
    sizes = []
    for grow in (0, 0, 2, 0, 1):
        if grow:
            log.grow(grow)
        code, out, _ = run(log, tmp_path / "witness", "--publish-file", str(sink))
        assert code == 0
        sizes.append(int(out.split()[2]))
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [line["size"] for line in lines] == sorted(set(sizes)) and len(lines) == 3
    assert all(log.components.checkpoint_keys.open(line["note"]).size == line["size"] for line in lines)
    assert {line["origin"] for line in lines} == {log.origin}


async def _stored(subject: str) -> list[Any]:
    import nats

    client = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        jetstream = client.jetstream()
        info = await jetstream.stream_info(STREAM, subjects_filter=subject)
        count = (info.state.subjects or {}).get(subject, 0)
        messages, sequence = [], 0
        for _ in range(count):
            message = await jetstream.get_msg(STREAM, seq=sequence + 1, subject=subject, next=True)
            messages.append(message)
            sequence = message.seq or sequence + 1
        return messages
    finally:
        await client.close()


async def _purge(subject: str) -> None:
    import nats

    client = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        await client.jetstream().purge_stream(STREAM, subject=subject)
    finally:
        await client.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # NATS does not care which store
def test_a_published_checkpoint_lands_in_jetstream_once_even_if_published_twice(
    log: Log, tmp_path: Path
) -> None:
    require_nats()
    subject = subject_for(log.origin)
    assert subject == f"ledgerline.checkpoints.ledgerline_witness-test-{log.origin.rsplit('-', 1)[1]}"
    try:
        assert run(log, tmp_path / "witness", "--nats-url", NATS_URL)[0] == 0
        note = (tmp_path / "witness" / "latest").read_text()
        checkpoint = log.components.checkpoint_keys.open(note)
        NatsSink(NATS_URL).publish(checkpoint, note)  # a retry: deduplicated by Nats-Msg-Id
        (message,) = asyncio.run(_stored(subject))
        assert message.data.decode() == note
        assert (
            message.headers["Nats-Msg-Id"] == f"{log.origin}/{checkpoint.size}/{checkpoint.root_hash.hex()}"
        )

        grown = log.grow(1)
        assert run(log, tmp_path / "witness", "--nats-url", NATS_URL)[0] == 0
        assert run(log, tmp_path / "witness", "--nats-url", NATS_URL)[0] == 0  # unchanged: not again
        messages = asyncio.run(_stored(subject))
        assert [log.components.checkpoint_keys.open(m.data).size for m in messages] == [
            checkpoint.size,
            grown,
        ]
    finally:
        asyncio.run(_purge(subject))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unreachable_nats_is_exit_3_and_published_on_a_later_round(log: Log, tmp_path: Path) -> None:
    require_nats()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"nats://127.0.0.1:{sock.getsockname()[1]}"
    code, out, err = run(log, tmp_path / "witness", "--nats-url", dead)
    assert (code, out) == (3, "") and err.startswith("error: cannot publish to NATS at nats://127.0.0.1:")
    assert (tmp_path / "witness" / "latest").exists()  # accepted, not yet published
    subject = subject_for(log.origin)
    try:
        assert run(log, tmp_path / "witness", "--nats-url", NATS_URL)[0] == 0
        assert len(asyncio.run(_stored(subject))) == 1
    finally:
        asyncio.run(_purge(subject))


# ---- a real serve process, the witness following it ----------------------------------------------


def _wait(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_witness_follows_a_served_log_and_stops_cleanly(
    pg_database: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    origin = f"ledgerline/witness-test-{uuid.uuid4().hex[:12]}"
    settings = settings_for(pg_database, tmp_path, LEDGERLINE_AUDIT_ORIGIN=origin)
    components = build(settings, init=True, passwords=fast_passwords)
    stop = threading.Event()
    projections = list(components.projections.values())
    workers = start_workers(projections, components.identity, components.engine, settings.database, stop)
    try:
        admin = register(components.identity, "root", is_superuser=True)
        key = components.identity.issue_api_key(admin.id, name="w", permissions={"audit_logs:read": True}).key
        vkey = components.checkpoint_keys.signer.verifier_key.encode()
        env = {**FAST_ARGON2_ENV, **QUIET_USAGE, "LEDGERLINE_AUDIT_ORIGIN": origin}
        directory = tmp_path / "witness"
        with serving(pg_database, tmp_path, 1, env) as (urls, processes):
            args = ["--url", urls[0], "--public-key", vkey, "--dir", str(directory), "--follow"]
            args += ["--interval", "0.2", "--publish-file", str(tmp_path / "sink.jsonl")]
            witness_process = subprocess.Popen(
                [LEDGERLINE, "audit", "witness", *args],
                env={**os.environ, "LEDGERLINE_WITNESS_API_KEY": key},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                _wait(lambda: (directory / "latest").exists())
                first = accepted_size(directory)
                register(components.identity, "bob")
                _wait(lambda: accepted_size(directory) > first)
                processes[0].kill()  # the log goes away: logged, retried with backoff
                processes[0].wait(timeout=10)
                time.sleep(1)
                witness_process.send_signal(signal.SIGTERM)
                out, err = witness_process.communicate(timeout=15)
            finally:
                if witness_process.poll() is None:
                    witness_process.kill()
                    witness_process.wait(timeout=10)
        assert witness_process.returncode == 0, err
        lines = out.decode().splitlines()
        assert [line.split()[:2] for line in lines] == [["accepted", origin]] * len(lines)
        sizes = [int(line.split()[2]) for line in lines]  # one line per new checkpoint
        assert len(sizes) >= 2 and sizes == sorted(set(sizes)) and sizes[-1] == accepted_size(directory)
        assert "error: cannot fetch" in err.decode() and "retrying in" in err.decode()
        assert key not in (out + err).decode()
        published = [json.loads(line)["size"] for line in (tmp_path / "sink.jsonl").read_text().splitlines()]
        assert published == sizes
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
        components.close()
