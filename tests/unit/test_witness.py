"""The witness against a small in-memory log served over httpx's mock transport: its rules, its
directory, its file sink, its exit codes and lines (the real API: tests/integration)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from eventstore.audit_chain.merkle import InMemoryNodes, consistency_proof, leaf_hash
from eventstore.audit_chain.note import Checkpoint, NoteSigner, sign_checkpoint
from ledgerline.checkpoint_sinks import redacted, subject_for
from ledgerline.witness import Rejected, judge, witness

ORIGIN = "ledgerline/unit.example"
API_KEY = "llk_unit_secret_never_printed"


class FakeLog:
    """A log of ``size`` leaves that answers the two routes a witness reads."""

    def __init__(self, signer: NoteSigner | None = None) -> None:
        self.signer = signer or NoteSigner(ORIGIN, b"\x07" * 32)
        self.nodes = InMemoryNodes()
        self.status = 200
        self.seen_keys: list[str | None] = []

    def grow(self, count: int) -> None:
        for _ in range(count):
            self.nodes.append(leaf_hash(f"event {self.nodes.size}".encode()))

    def note(self, size: int | None = None, root: bytes | None = None) -> str:
        size = self.nodes.size if size is None else size
        root = root or self.nodes.root(size)
        return sign_checkpoint(Checkpoint(self.signer.name, size, root), [self.signer])

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen_keys.append(request.headers.get("x-api-key"))
        if self.status != 200:
            return httpx.Response(self.status, json={"status": self.status})
        if request.url.path == "/api/v1/audit-logs/checkpoint":
            return httpx.Response(200, text=self.served())
        assert request.url.path == "/api/v1/audit-logs/consistency"
        first, second = int(request.url.params["from"]), int(request.url.params["to"])
        proof = consistency_proof(first, second, self.nodes.read_nodes)
        data = {"from": first, "to": second, "proof": [base64.b64encode(p).decode() for p in proof]}
        return httpx.Response(200, json={"data": data})

    def served(self) -> str:
        return self.note()

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))


def run(log: FakeLog, directory: Path, *extra: str, vkey: str | None = None) -> tuple[int, str, str]:
    args = ["--url", "https://log.example", "--public-key", vkey or log.signer.verifier_key.encode()]
    args += ["--dir", str(directory), *extra]
    result = CliRunner().invoke(
        witness, args, obj={"http_client": log.client()}, env={"LEDGERLINE_WITNESS_API_KEY": API_KEY}
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert API_KEY not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_first_run_accepts_and_later_runs_need_a_proof(tmp_path: Path) -> None:
    log = FakeLog()
    log.grow(3)
    code, out, _ = run(log, tmp_path)
    assert code == 0 and out == f"accepted {ORIGIN} 3 {base64.b64encode(log.nodes.root()).decode()}\n"
    assert (tmp_path / "latest").read_text() == log.note() == (tmp_path / "checkpoints" / "3").read_text()
    assert (tmp_path / "origin").read_text() == f"{ORIGIN}\n"
    for grown in (4, 8, 13, 13, 64):  # powers of two, odd sizes, the same size again
        log.grow(grown - log.nodes.size)
        code, out, _ = run(log, tmp_path)
        assert code == 0 and out.split()[2] == str(grown)
    assert log.seen_keys and set(log.seen_keys) == {API_KEY}
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [3, 4, 8, 13, 64]


def test_a_rewritten_log_is_refused_and_kept_as_evidence(tmp_path: Path) -> None:
    log = FakeLog()
    log.grow(5)
    assert run(log, tmp_path)[0] == 0
    accepted = (tmp_path / "latest").read_text()
    forged = FakeLog(log.signer)  # the owner, holding the key, rebuilds the log with leaf 2 changed
    for i in range(9):
        forged.nodes.append(leaf_hash(b"changed" if i == 2 else f"event {i}".encode()))
    code, out, err = run(forged, tmp_path)
    assert (code, out) == (1, "")
    assert err.startswith("rejected: rewritten or forked: consistency proof 5 -> 9 fails")
    assert err.count("\n") == 1
    assert (tmp_path / "latest").read_text() == accepted
    (note,) = (tmp_path / "rejected").glob("*-9.note")
    assert note.read_text() == forged.note()
    reason = note.with_suffix(".reason").read_text().splitlines()
    assert reason[0].startswith("rewritten or forked") and len(reason) > 1  # the failing proof too


@pytest.mark.parametrize(
    ("serve", "kind"),
    [
        (lambda log: log.note(size=4), "truncated"),
        (lambda log: log.note(root=b"\x01" * 32), "same size different root"),
        (lambda log: FakeLog(NoteSigner(ORIGIN, b"\x08" * 32)).note(), "unknown key"),
        (lambda log: FakeLog(NoteSigner("ledgerline/other", b"\x07" * 32)).note(), "unknown key"),
        (lambda log: log.note().replace(f"\n{log.nodes.size}\n", "\n7\n", 1), "signature invalid"),
        (lambda log: "not a note\n", "malformed checkpoint"),
    ],
)
def test_refusals_name_their_reason_and_leave_latest_alone(tmp_path: Path, serve: object, kind: str) -> None:
    log = FakeLog()
    log.grow(6)
    assert run(log, tmp_path)[0] == 0
    latest = (tmp_path / "latest").read_text()
    log.served = lambda: serve(log)  # type: ignore[method-assign,operator]
    code, out, err = run(log, tmp_path, "--publish-file", str(tmp_path / "sink.jsonl"))
    assert (code, out) == (1, "") and err.startswith(f"rejected: {kind}: ")
    assert (tmp_path / "latest").read_text() == latest
    assert len(list((tmp_path / "rejected").glob("*.note"))) == 1
    assert not (tmp_path / "sink.jsonl").exists()


def test_the_first_checkpoint_fixes_the_origin(tmp_path: Path) -> None:
    key = b"\x09" * 32
    first, other = FakeLog(NoteSigner("ledgerline/a", key)), FakeLog(NoteSigner("ledgerline/b", key))
    first.grow(2)
    other.grow(3)
    vkeys = [arg for log in (first, other) for arg in ("--public-key", log.signer.verifier_key.encode())]
    assert run(first, tmp_path, *vkeys)[0] == 0
    code, _, err = run(other, tmp_path, *vkeys)
    assert code == 1 and err.startswith("rejected: origin changed: ")


def test_network_and_http_errors_exit_3_with_one_line(tmp_path: Path) -> None:
    log = FakeLog()
    log.grow(2)
    log.status = 401
    code, out, err = run(log, tmp_path)
    assert (code, out) == (3, "")
    assert err == "error: cannot fetch https://log.example/api/v1/audit-logs/checkpoint: HTTP 401\n"
    assert not (tmp_path / "latest").exists()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    vkey = log.signer.verifier_key.encode()
    args = ["--url", "https://user:pw@log.example", "--public-key", vkey, "--dir", str(tmp_path)]
    client = httpx.Client(transport=httpx.MockTransport(refuse))
    result = CliRunner().invoke(witness, [*args, "--api-key", API_KEY], obj={"http_client": client})
    assert result.exit_code == 3 and result.stderr.count("\n") == 1
    assert "pw" not in result.stderr and API_KEY not in result.stderr and "log.example" in result.stderr


def test_a_malformed_verifier_key_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run(FakeLog(), tmp_path, vkey="ledgerline+00000000+AAAA")
    assert code == 2 and "--public-key" in err


def test_the_file_sink_gets_one_line_per_accepted_checkpoint(tmp_path: Path) -> None:
    log, sink = FakeLog(), tmp_path / "out" / "checkpoints.jsonl"
    for size in (1, 2, 2, 5, 5, 9):
        log.grow(size - log.nodes.size)
        assert run(log, tmp_path / "dir", "--publish-file", str(sink))[0] == 0
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [line["size"] for line in lines] == [1, 2, 5, 9]
    assert lines[-1]["note"] == log.note() and lines[-1]["origin"] == ORIGIN
    assert lines[-1]["root_hash"] == base64.b64encode(log.nodes.root()).decode()


def test_a_failed_publish_is_retried_on_the_next_round(tmp_path: Path) -> None:
    log, sink = FakeLog(), tmp_path / "in" / "sink.jsonl"
    log.grow(3)
    (tmp_path / "in").write_text("a file where the sink's folder should be")
    code, out, err = run(log, tmp_path / "dir", "--publish-file", str(sink))
    assert code == 2 and out == "" and err.count("\n") == 1 and (tmp_path / "dir" / "latest").exists()
    (tmp_path / "in").unlink()
    assert run(log, tmp_path / "dir", "--publish-file", str(sink))[0] == 0
    assert [json.loads(line)["size"] for line in sink.read_text().splitlines()] == [3]


def test_judge_asks_for_a_proof_only_between_two_non_empty_trees() -> None:
    nodes = InMemoryNodes()
    empty = Checkpoint(ORIGIN, 0, nodes.root())
    for i in range(4):
        nodes.append(leaf_hash(bytes([i])))
    four = Checkpoint(ORIGIN, 4, nodes.root())

    def no_proof(first: int, second: int) -> list[bytes]:
        raise AssertionError("no proof needed")

    assert judge(None, empty, no_proof) and judge(empty, four, no_proof) and not judge(four, four, no_proof)
    with pytest.raises(Rejected, match="rewritten or forked"):
        judge(Checkpoint(ORIGIN, 0, b"\x00" * 32), four, no_proof)


def test_subjects_and_printed_urls() -> None:
    assert subject_for("ledgerline/db.example:5432") == "ledgerline.checkpoints.ledgerline_db_example_5432"
    assert redacted("https://u:p@log.example:8443/base?key=s#f") == "https://log.example:8443/base"
