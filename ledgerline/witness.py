"""``ledgerline audit witness``: keep the log's signed checkpoints outside its database, so that a
rewrite, a truncation or a fork is caught by anyone who kept any earlier one.

Each round fetches the log's latest checkpoint (``GET /api/v1/audit-logs/checkpoint``), opens it
with the trusted verifier keys and the origin the first accepted checkpoint fixed, and, when DIR
holds an earlier accepted checkpoint of size M < N, checks the RFC 9162 consistency proof M -> N
(``GET /api/v1/audit-logs/consistency``) against both roots. The same size must carry the same
root; a smaller size is a truncation. Nothing is ever accepted on the log's word alone.

DIR layout (every file written to a temporary name, fsynced, then renamed):

    DIR/origin                  the log's origin, fixed by the first accepted checkpoint
    DIR/latest                  the last accepted signed note (never replaced by a rejected one)
    DIR/checkpoints/<size>      every accepted note, by tree size
    DIR/published               the size last handed to every configured sink
    DIR/rejected/<time>-<size>.note, .reason   a refused note as served, and why (the proof too)

Sinks (``ledgerline.checkpoint_sinks``): ``--publish-file`` appends one JSON line per accepted
checkpoint; ``--nats-url`` publishes the note to NATS JetStream. A sink that fails is retried on
the next round (``DIR/published`` lags behind ``DIR/latest`` until it succeeds).

Exit status: 0 accepted (one line ``accepted <origin> <size> <root>``), 1 rejected (one line
saying why), 2 bad usage or an unreadable DIR, 3 the log or a sink could not be reached.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import httpx

from eventstore.audit_chain.merkle import verify_consistency
from eventstore.audit_chain.note import (
    Checkpoint,
    InvalidSignatureError,
    NoteError,
    UnverifiedNoteError,
    VerifierKey,
    open_checkpoint,
    parse_note,
)
from ledgerline.checkpoint_sinks import FileSink, NatsSink, Sink, Unreachable, redacted

ACCEPTED, REJECTED, UNUSABLE, UNREACHABLE = 0, 1, 2, 3
MAX_BACKOFF_SECONDS = 300.0

# ---- the pure part: what may be accepted after what ------------------------------------------


class Rejected(Exception):
    """A checkpoint that must not be accepted: ``kind`` names the attack it shows."""

    def __init__(self, kind: str, detail: str, proof: Sequence[bytes] = ()) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.proof = kind, detail, tuple(proof)
        self.evidence: Path | None = None  # where the refused note is kept


def open_trusted(note: str, trusted: Sequence[VerifierKey], origin: str | None) -> Checkpoint:
    """The checkpoint in ``note`` if a trusted key signed it and it is of ``origin`` (when known)."""
    try:
        checkpoint = open_checkpoint(note, trusted)
    except InvalidSignatureError as error:
        raise Rejected("signature invalid", str(error)) from None
    except UnverifiedNoteError:
        raise Rejected("unknown key", "no signature from a trusted key") from None
    except NoteError as error:
        raise Rejected("malformed checkpoint", str(error)) from None
    if origin is not None and checkpoint.origin != origin:
        raise Rejected("origin changed", f"checkpoint of {checkpoint.origin!r}, this log is {origin!r}")
    return checkpoint


def judge(
    previous: Checkpoint | None, current: Checkpoint, proof_between: Callable[[int, int], list[bytes]]
) -> bool:
    """Does ``current`` extend the last accepted ``previous``? True when it is larger (a new
    checkpoint), False when it is the same tree; raises ``Rejected`` otherwise. ``proof_between``
    fetches the consistency proof M -> N (asked only when 0 < M < N)."""
    if previous is None:
        return True
    m, n = previous.size, current.size
    if n < m:
        raise Rejected("truncated", f"a tree of {n} leaves, smaller than the {m} already accepted")
    if n == m:
        if current.root_hash != previous.root_hash:
            raise Rejected(
                "same size different root",
                f"tree {n} has root {_b64(current.root_hash)}, {_b64(previous.root_hash)} was accepted",
            )
        return False
    proof = proof_between(m, n) if m else []
    if not verify_consistency(m, n, previous.root_hash, current.root_hash, proof):
        raise Rejected("rewritten or forked", f"consistency proof {m} -> {n} fails", proof)
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---- the log, over HTTP --------------------------------------------------------------------------


class LogClient:
    """The two routes a witness reads; ``client`` is injectable (tests use the in-process app)."""

    def __init__(self, base_url: str, api_key: str, client: httpx.Client | None = None) -> None:
        self.base = base_url.rstrip("/") + "/api/v1/audit-logs"
        self._headers = {"X-API-Key": api_key}
        self._client = client or httpx.Client(timeout=10.0, follow_redirects=False)
        self._owned = client is None

    def _get(self, path: str, params: dict[str, int] | None = None) -> httpx.Response:
        url = self.base + path
        try:
            response = self._client.get(url, params=params, headers=self._headers)
        except httpx.HTTPError as error:
            raise Unreachable(f"cannot fetch {redacted(url)}: {type(error).__name__} {error}") from None
        if response.status_code != 200:
            raise Unreachable(f"cannot fetch {redacted(url)}: HTTP {response.status_code}")
        return response

    def checkpoint(self) -> str:
        return self._get("/checkpoint").text

    def consistency(self, first: int, second: int) -> list[bytes]:
        response = self._get("/consistency", {"from": first, "to": second})
        try:
            data = response.json()["data"]
            if (data["from"], data["to"]) != (first, second) or not isinstance(data["proof"], list):
                raise ValueError("another proof than asked")
            return [base64.b64decode(item, validate=True) for item in data["proof"]]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unreachable(f"unexpected consistency answer from {redacted(self.base)}") from None

    def close(self) -> None:
        if self._owned:
            self._client.close()


# ---- DIR: what this witness has accepted ---------------------------------------------------------


class StateError(Exception):
    """DIR holds something this witness did not write."""


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class WitnessDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One witness round at a time on this directory."""
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self, name: str) -> str | None:
        try:
            return (self.path / name).read_text("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeError) as error:
            raise StateError(f"cannot read {self.path / name}: {type(error).__name__}") from None

    def latest(self) -> tuple[str | None, Checkpoint | None]:
        """The fixed origin and the last accepted checkpoint (either may be None on a new DIR)."""
        origin, note = self._read("origin"), self._read("latest")
        checkpoint = None
        if note is not None:
            try:
                checkpoint = Checkpoint.parse(parse_note(note).text)
            except NoteError:
                raise StateError(f"{self.path / 'latest'} is not a checkpoint") from None
        origin = origin.strip() if origin is not None else None
        if checkpoint is not None and origin not in (None, checkpoint.origin):
            raise StateError(f"{self.path} holds checkpoints of {checkpoint.origin!r}, not {origin!r}")
        return origin or (checkpoint.origin if checkpoint else None), checkpoint

    def accept(self, note: str, checkpoint: Checkpoint) -> None:
        write_atomically(self.path / "checkpoints" / str(checkpoint.size), note.encode())
        if self._read("origin") is None:
            write_atomically(self.path / "origin", f"{checkpoint.origin}\n".encode())
        write_atomically(self.path / "latest", note.encode())  # last: the commit point

    def reject(self, note: str, rejection: Rejected) -> Path:
        try:
            size = str(Checkpoint.parse(parse_note(note).text).size)
        except NoteError:
            size = "unparsed"
        stem = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{size}"
        reason = "".join(f"{line}\n" for line in (str(rejection), *map(_b64, rejection.proof)))
        write_atomically(self.path / "rejected" / f"{stem}.reason", reason.encode())
        write_atomically(self.path / "rejected" / f"{stem}.note", note.encode())
        return self.path / "rejected" / f"{stem}.note"

    def published(self) -> int | None:
        text = self._read("published")
        return int(text) if text and text.strip().isdigit() else None

    def mark_published(self, size: int) -> None:
        write_atomically(self.path / "published", f"{size}\n".encode())


# ---- one round, and the command ------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    checkpoint: Checkpoint
    new: bool  # larger than the last accepted (False: the same tree again)

    def line(self) -> str:
        cp = self.checkpoint
        return f"accepted {cp.origin} {cp.size} {_b64(cp.root_hash)}"


def witness_round(
    log: LogClient, directory: WitnessDir, trusted: Sequence[VerifierKey], sinks: Sequence[Sink] = ()
) -> Outcome:
    """Fetch, check and keep the log's latest checkpoint, then hand it to the sinks (``Rejected``,
    ``Unreachable`` or ``StateError`` otherwise)."""
    note = log.checkpoint()
    with directory.locked():
        origin, previous = directory.latest()
        try:
            checkpoint = open_trusted(note, trusted, origin)
            new = judge(previous, checkpoint, log.consistency)
        except Rejected as rejection:
            with contextlib.suppress(OSError):  # the refusal stands even if DIR cannot keep it
                rejection.evidence = directory.reject(note, rejection)
            raise
        if new:
            directory.accept(note, checkpoint)
        else:
            assert previous is not None
            checkpoint, note = previous, (directory.path / "latest").read_text("utf-8")
        if sinks and directory.published() != checkpoint.size:
            for sink in sinks:
                sink.publish(checkpoint, note)
            directory.mark_published(checkpoint.size)
    return Outcome(checkpoint, new)


def _verifier_keys(values: Sequence[str]) -> list[VerifierKey]:
    keys = []
    for value in values:
        try:
            keys.append(VerifierKey.parse(value))
        except ValueError as error:
            hint = f"{error} (want name+hex id+base64 key)"
            raise click.BadParameter(hint, param_hint="--public-key") from None
    return keys


VKEY_HELP = "A trusted note verifier key, name+id+key (repeatable; `ledgerline audit public-key`)."
DIR_HELP = "Where accepted (and rejected) checkpoints are kept."
API_KEY_HELP = "A key holding audit_logs:read (the environment variable keeps it off the command line)."


@click.command("witness")
@click.option("--url", required=True, help="The log's base URL, e.g. https://ledgerline.example.")
@click.option("--public-key", "vkeys", multiple=True, required=True, help=VKEY_HELP)
@click.option(
    "--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path), help=DIR_HELP
)
@click.option(
    "--api-key", envvar="LEDGERLINE_WITNESS_API_KEY", required=True, show_envvar=True, help=API_KEY_HELP
)
@click.option("--follow", is_flag=True, help="Keep polling until SIGINT or SIGTERM.")
@click.option(
    "--interval", type=click.FloatRange(min=0.05), default=60.0, show_default=True, help="Poll seconds."
)
@click.option(
    "--publish-file", type=click.Path(dir_okay=False, path_type=Path), help="Append JSON lines here."
)
@click.option("--nats-url", help="Publish each accepted checkpoint to NATS JetStream.")
@click.pass_context
def witness(
    ctx: click.Context,
    url: str,
    vkeys: tuple[str, ...],
    directory: Path,
    api_key: str,
    follow: bool,
    interval: float,
    publish_file: Path | None,
    nats_url: str | None,
) -> None:
    """Check the log's latest checkpoint against the last one kept in DIR (consistency proof),
    keep it and publish it; exit 1 when the log was rewritten, truncated or forked."""
    trusted = _verifier_keys(vkeys)
    sinks: list[Sink] = [FileSink(publish_file)] if publish_file else []
    sinks += [NatsSink(nats_url)] if nats_url else []
    # An embedding program (or a test) may hand in its own HTTP client: ctx.obj["http_client"].
    log = LogClient(url, api_key, (ctx.obj or {}).get("http_client"))
    try:
        ctx.exit(
            _follow(log, WitnessDir(directory), trusted, sinks, interval)
            if follow
            else _once(log, WitnessDir(directory), trusted, sinks, always_print=True)
        )
    finally:
        log.close()


def _once(
    log: LogClient,
    directory: WitnessDir,
    trusted: Sequence[VerifierKey],
    sinks: Sequence[Sink],
    *,
    always_print: bool,
) -> int:
    try:
        outcome = witness_round(log, directory, trusted, sinks)
    except Rejected as rejection:
        kept = f" (kept as {rejection.evidence})" if rejection.evidence else " (could not be kept)"
        click.echo(f"rejected: {rejection}{kept}", err=True)
        return REJECTED
    except Unreachable as error:
        click.echo(f"error: {error}", err=True)
        return UNREACHABLE
    except (StateError, OSError) as error:
        click.echo(f"error: {directory.path}: {error}", err=True)
        return UNUSABLE
    if outcome.new or always_print:
        click.echo(outcome.line())
    return ACCEPTED


def _follow(
    log: LogClient,
    directory: WitnessDir,
    trusted: Sequence[VerifierKey],
    sinks: Sequence[Sink],
    interval: float,
) -> int:
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        failures, first = 0, True
        while not stop.is_set():
            code = _once(log, directory, trusted, sinks, always_print=first)
            if code in (REJECTED, UNUSABLE):
                return code
            failures = min(failures + 1, 16) if code == UNREACHABLE else 0
            first = first and code != ACCEPTED
            delay = min(interval * 2**failures, max(interval, MAX_BACKOFF_SECONDS)) if failures else interval
            if failures:
                click.echo(f"retrying in {delay:.1f}s (failure {failures} in a row)", err=True)
            stop.wait(delay)
        return ACCEPTED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
