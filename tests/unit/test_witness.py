"""The witness against a small in-memory log served over httpx's mock transport: its rules, its
directory, its file sink, its exit codes and lines (the real API: tests/integration)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from eventstore.audit_chain.merkle import InMemoryNodes, consistency_proof, leaf_hash
from eventstore.audit_chain.note import Checkpoint, NoteSigner, sign_checkpoint
from ledgerline import witness_log
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
        self.withheld: set[int] | None = set()  # proofs to these sizes fail with HTTP 500 (None: all)
        self.answer: Callable[[int, int, list[str]], Any] | None = None  # a consistency answer of its own
        self.asked: list[str] = []

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
            self.asked.append("checkpoint")
            return httpx.Response(200, text=self.served())
        assert request.url.path == "/api/v1/audit-logs/consistency"
        first, second = int(request.url.params["from"]), int(request.url.params["to"])
        self.asked.append(f"{first}->{second}")
        if self.withheld is None or second in self.withheld:
            return httpx.Response(500, json={"status": 500})
        proof = [
            base64.b64encode(p).decode() for p in consistency_proof(first, second, self.nodes.read_nodes)
        ]
        if self.answer is not None:
            return httpx.Response(200, json=self.answer(first, second, proof))
        return httpx.Response(200, json={"data": {"from": first, "to": second, "proof": proof}})

    def served(self) -> str:
        return self.note()

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle), **options)


def forked_from(log: FakeLog, size: int, changed: int = 2) -> FakeLog:
    """The owner, holding the key, rebuilds the log with leaf ``changed`` altered."""
    forged = FakeLog(log.signer)
    for i in range(size):
        forged.nodes.append(leaf_hash(b"changed" if i == changed else f"event {i}".encode()))
    return forged


def run(
    log: FakeLog, directory: Path, *extra: str, vkey: str | None = None, client: httpx.Client | None = None
) -> tuple[int, str, str]:
    args = ["--url", "https://log.example", "--public-key", vkey or log.signer.verifier_key.encode()]
    args += ["--dir", str(directory), *extra]
    result = CliRunner().invoke(
        witness,
        args,
        obj={"http_client": client or log.client()},
        env={"LEDGERLINE_WITNESS_API_KEY": API_KEY},
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
    forged = forked_from(log, 9)
    code, out, err = run(forged, tmp_path)
    assert (code, out) == (1, "")
    assert err.startswith("rejected: rewritten or forked: consistency proof 5 -> 9 fails")
    assert err.count("\n") == 1
    assert (tmp_path / "latest").read_text() == accepted
    (note,) = (tmp_path / "rejected").glob("9-*.note")
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


# ---- attacks: a fork whose proof is withheld, bad answers, huge bodies, redirects, a changed DIR ----


def _accepted_at(size: int, directory: Path) -> FakeLog:
    log = FakeLog()
    log.grow(size)
    assert run(log, directory)[0] == 0
    return log


def _withholding(forged: FakeLog, how: str) -> httpx.Client:
    """The forged log, its consistency route failing as ``how`` says."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/consistency"):
            if how == "refused":
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response({"500": 500, "404": 404, "503": 503}[how], json={"status": how})
        return forged.handle(request)

    return httpx.Client(transport=httpx.MockTransport(handle))


def _files(directory: Path, pattern: str = "*") -> list[Path]:
    return sorted(directory.glob(pattern)) if directory.exists() else []


@pytest.mark.parametrize("how", ["500", "503", "404", "refused"])
def test_a_fork_whose_proof_is_withheld_is_refused_at_once_without_follow(tmp_path: Path, how: str) -> None:
    log = _accepted_at(5, tmp_path)
    latest = (tmp_path / "latest").read_text()
    forged = forked_from(log, 9)
    code, out, err = run(forged, tmp_path, client=_withholding(forged, how))
    assert (code, out) == (1, "") and err.count("\n") == 1, err
    assert err.startswith("rejected: unlinked: the log signed size 9 but gives no consistency proof from 5 ")
    (kept,) = _files(tmp_path / "rejected", "9-*.note")
    assert kept.read_text() == forged.note() and f"kept as {kept}" in err
    assert kept.with_suffix(".reason").read_text().startswith("unlinked: the log signed size 9 ")
    assert (tmp_path / "latest").read_text() == latest and not _files(tmp_path / "pending")


def test_unlinked_rounds_are_counted_in_dir_then_the_checkpoint_is_refused(tmp_path: Path) -> None:
    """From cron (no --follow): each run is a round; the count lives in DIR/pending."""
    log = _accepted_at(5, tmp_path)
    forged = forked_from(log, 9)
    for round_ in (1, 2):
        code, out, err = run(forged, tmp_path, "--unlinked-rounds", "3", client=_withholding(forged, "500"))
        assert (code, out) == (4, ""), err
        pending = tmp_path / "pending" / "9.note"
        assert err == (
            "unlinked: the log signed size 9 but gives no consistency proof from 5 "
            "(cannot fetch https://log.example/api/v1/audit-logs/consistency: HTTP 500); "
            f"kept as {pending} (round {round_} of 3)\n"
        )
        assert pending.read_text() == forged.note() and not _files(tmp_path / "rejected")
    code, out, err = run(forged, tmp_path, "--unlinked-rounds", "3", client=_withholding(forged, "500"))
    assert (code, out) == (1, "") and err.startswith("rejected: unlinked: the log signed size 9 ")
    assert "3 rounds" in err and not _files(tmp_path / "pending", "*.note")
    assert len(_files(tmp_path / "rejected", "9-*.note")) == 1 and accepted_size(tmp_path) == 5


def test_follow_refuses_a_fork_whose_proof_is_withheld_after_its_rounds(tmp_path: Path) -> None:
    log = _accepted_at(5, tmp_path)
    forged = forked_from(log, 9)
    client = _withholding(forged, "500")
    code, out, err = run(forged, tmp_path, "--follow", "--interval", "0.05", client=client)
    lines = err.splitlines()
    assert (code, out) == (1, "") and [line.split(":")[0] for line in lines] == ["unlinked"] * 2 + [
        "rejected"
    ]
    assert "(round 1 of 3)" in lines[0] and "(round 2 of 3)" in lines[1]
    assert lines[2].startswith("rejected: unlinked: the log signed size 9 but gives no consistency proof")
    assert len(_files(tmp_path / "rejected", "9-*.note")) == 1 and accepted_size(tmp_path) == 5


def test_a_proof_that_comes_a_round_later_links_the_pending_checkpoint(tmp_path: Path) -> None:
    log = _accepted_at(5, tmp_path)
    log.grow(4)
    log.withheld = None
    assert run(log, tmp_path, "--unlinked-rounds", "3")[0] == 4
    log.withheld = set()
    code, out, err = run(log, tmp_path, "--unlinked-rounds", "3")
    assert (code, err) == (0, "") and out.split()[2] == "9" and accepted_size(tmp_path) == 9
    assert not _files(tmp_path / "pending", "*.note") and not _files(tmp_path / "rejected")


@pytest.mark.parametrize("forked", [True, False])
def test_a_pending_checkpoint_is_linked_to_one_accepted_after_it(tmp_path: Path, forked: bool) -> None:
    """A note held pending at 9 while a later one (12) is accepted: the log must then prove
    9 -> 12; a fork cannot, a genuine note can."""
    log = _accepted_at(5, tmp_path)
    log.grow(4)
    held = forked_from(log, 9) if forked else log
    pending_note = held.note()
    log.served = lambda: pending_note  # type: ignore[method-assign]
    log.withheld = {9}
    assert run(log, tmp_path, "--unlinked-rounds", "3")[0] == 4
    del log.served
    log.grow(3)
    code, out, err = run(log, tmp_path, "--unlinked-rounds", "3")  # 5 -> 9 withheld again, 5 -> 12 given
    assert code == 4 and out.split()[2] == "12" and "(round 2 of 3)" in err and accepted_size(tmp_path) == 12
    log.withheld = set()
    code, out, err = run(log, tmp_path, "--unlinked-rounds", "3")
    assert "9->12" in log.asked and not _files(tmp_path / "pending", "*.note")
    if forked:
        assert (code, out) == (1, "") and err.startswith(
            "rejected: rewritten or forked: consistency proof 9 -> 12"
        )
        (kept,) = _files(tmp_path / "rejected", "9-*.note")
        assert kept.read_text() == pending_note
    else:
        assert (code, err) == (0, "") and not _files(tmp_path / "rejected")


def test_a_second_root_signed_for_a_pending_size_is_refused_at_once(tmp_path: Path) -> None:
    log = _accepted_at(5, tmp_path)
    log.grow(4)
    forged = forked_from(log, 9)
    log.served = lambda: forged.note()  # type: ignore[method-assign]
    log.withheld = None
    assert run(log, tmp_path, "--unlinked-rounds", "3")[0] == 4
    del log.served  # now the genuine tree of 9: two signed roots for one size
    code, out, err = run(log, tmp_path, "--unlinked-rounds", "3")
    assert (code, out) == (1, "") and err.startswith("rejected: same size different root: ")
    kept = {path.read_text() for path in _files(tmp_path / "rejected", "9-*.note")}
    assert kept == {forged.note(), log.note()} and not _files(tmp_path / "pending", "*.note")


def _answers() -> dict[str, Callable[[int, int, list[str]], Any]]:
    b64 = base64.b64encode
    return {
        "other sizes": lambda m, n, proof: {"data": {"from": m - 1, "to": n, "proof": proof}},
        "booleans": lambda m, n, proof: {"data": {"from": True, "to": n, "proof": proof}} if m == 1 else None,
        "a proof that is not a list": lambda m, n, proof: {"data": {"from": m, "to": n, "proof": "AAAA"}},
        "not base64": lambda m, n, proof: {"data": {"from": m, "to": n, "proof": ["not base64!", *proof]}},
        "a short hash": lambda m, n, proof: {
            "data": {"from": m, "to": n, "proof": [b64(b"x" * 31).decode()]}
        },
        "a number for a hash": lambda m, n, proof: {"data": {"from": m, "to": n, "proof": [7]}},
        "no data": lambda m, n, proof: {"proof": proof},
        "a list": lambda m, n, proof: [m, n, proof],
        "over 64 KiB": lambda m, n, proof: {"data": {"from": m, "to": n, "proof": proof}, "pad": "x" * 70000},
    }


@pytest.mark.parametrize("answer", sorted(_answers()))
def test_a_consistency_answer_that_is_not_the_proof_asked_is_a_rejection(tmp_path: Path, answer: str) -> None:
    log = _accepted_at(1 if answer == "booleans" else 5, tmp_path)
    latest = (tmp_path / "latest").read_text()
    log.grow(4)
    log.answer = _answers()[answer]
    code, out, err = run(log, tmp_path, "--unlinked-rounds", "3")
    assert (code, out) == (1, "") and err.startswith("rejected: bad consistency answer: "), err
    assert err.count("\n") == 1 and (tmp_path / "latest").read_text() == latest
    (kept,) = _files(tmp_path / "rejected", "*.note")
    assert kept.read_text() == log.note() and not _files(tmp_path / "pending", "*.note")


def test_a_consistency_answer_that_is_not_json_is_a_rejection(tmp_path: Path) -> None:
    log = _accepted_at(5, tmp_path)
    log.grow(4)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/consistency"):
            return httpx.Response(200, content=b"<html>hello</html>")
        return log.handle(request)

    code, _, err = run(log, tmp_path, client=httpx.Client(transport=httpx.MockTransport(handle)))
    assert code == 1 and err.startswith("rejected: bad consistency answer: ")


class Pulled:
    """A response body produced as it is read, counting what was taken."""

    def __init__(self, prefix: bytes, total: int) -> None:
        self.prefix, self.total, self.taken = prefix, total, 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.prefix
        self.taken = len(self.prefix)
        while self.taken < self.total:
            self.taken += 64 << 10
            yield b"x" * (64 << 10)


def test_a_huge_checkpoint_is_refused_without_being_read_or_kept_whole(tmp_path: Path) -> None:
    log = _accepted_at(5, tmp_path)
    bodies: list[Pulled] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(Pulled(log.note().encode(), 400 << 20))  # a 400 MB "checkpoint"
        return httpx.Response(200, content=bodies[-1])

    for _ in range(2):  # polled twice: kept once
        client = httpx.Client(transport=httpx.MockTransport(handle))
        code, out, err = run(log, tmp_path, client=client)
        assert (code, out) == (1, "") and err.startswith("rejected: oversized checkpoint: "), err
        assert bodies[-1].taken <= (1 << 20) + (128 << 10)
    (kept,) = _files(tmp_path / "rejected", "*.note")
    assert kept.stat().st_size == 1 << 20 and kept.read_bytes().startswith(log.note().encode())
    reason = kept.with_suffix(".reason").read_text()
    assert "cut" in reason and reason.count("seen ") == 2
    assert accepted_size(tmp_path) == 5


def test_redirects_are_never_followed(tmp_path: Path) -> None:
    log = FakeLog()
    log.grow(2)
    elsewhere: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host != "log.example":
            elsewhere.append(str(request.headers.get("x-api-key")))
            return log.handle(request)
        return httpx.Response(302, headers={"Location": "https://evil.example/api/v1/audit-logs/checkpoint"})

    for follow in (False, True):  # an embedding program's client that follows: not for these requests
        client = httpx.Client(transport=httpx.MockTransport(handle), follow_redirects=follow)
        code, out, err = run(log, tmp_path, client=client)
        assert (code, out) == (3, "") and "HTTP 302" in err and "not followed" in err and err.count("\n") == 1
    assert elsewhere == [] and not (tmp_path / "latest").exists()


def test_a_compressed_answer_is_not_inflated(tmp_path: Path) -> None:
    log = FakeLog()
    log.grow(2)

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(200, content=iter([b"\x1f\x8b..."]), headers={"Content-Encoding": "gzip"})

    code, _, err = run(log, tmp_path, client=httpx.Client(transport=httpx.MockTransport(handle)))
    assert code == 3 and "gzip" in err and err.count("\n") == 1


def test_a_trickling_body_is_cut_at_a_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = FakeLog()
    log.grow(2)
    monkeypatch.setattr(witness_log, "READ_SECONDS", -1.0)  # already past it at the first chunk

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([log.note().encode()]))

    code, _, err = run(log, tmp_path, client=httpx.Client(transport=httpx.MockTransport(handle)))
    assert code == 3 and "the body took over" in err and not (tmp_path / "latest").exists()


@pytest.mark.parametrize("tamper", ["another key", "another root", "not a note", "pending"])
def test_a_changed_dir_is_exit_2_and_never_trusted(tmp_path: Path, tamper: str) -> None:
    log = _accepted_at(5, tmp_path)
    intruder = NoteSigner(ORIGIN, b"\x0a" * 32)
    lower = FakeLog(intruder)
    lower.grow(1)
    latest = tmp_path / "latest"
    if tamper == "another key":  # someone with write access to DIR rolls the witness back
        latest.write_text(lower.note())
    elif tamper == "another root":
        latest.write_text(latest.read_text().replace("\n5\n", "\n1\n", 1))
    elif tamper == "not a note":
        latest.write_text("garbage\n")
    else:
        (tmp_path / "pending").mkdir()
        (tmp_path / "pending" / "9.note").write_text(lower.note())
        (tmp_path / "pending" / "9.reason").write_text("unlinked\nrounds 1\n")
    log.grow(4)
    code, out, err = run(log, tmp_path)
    assert (code, out) == (2, "") and err.startswith(f"error: {tmp_path}") and err.count("\n") == 1, err
    assert "trusted" in err or tamper == "not a note"


def test_unlinked_rounds_is_a_positive_count(tmp_path: Path) -> None:
    code, _, err = run(FakeLog(), tmp_path, "--unlinked-rounds", "0")
    assert code == 2 and "--unlinked-rounds" in err


def accepted_size(directory: Path) -> int:
    return Checkpoint.parse((directory / "latest").read_text().split("\n\n")[0] + "\n").size
