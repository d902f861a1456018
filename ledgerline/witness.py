"""``ledgerline audit witness``: keep the log's signed checkpoints outside its database, so that a
rewrite, a truncation or a fork is caught by anyone who kept any earlier one.

Each round fetches the log's latest checkpoint (``GET /api/v1/audit-logs/checkpoint``), opens it
with the trusted verifier keys and the origin the first accepted checkpoint fixed, and, when DIR
holds an earlier accepted checkpoint of size M < N, checks the RFC 9162 consistency proof M -> N
(``GET /api/v1/audit-logs/consistency``) against both roots. The same size must carry the same
root; a smaller size is a truncation. Nothing is ever accepted on the log's word alone, and
nothing in DIR is trusted on its own either: the accepted and pending notes are opened with the
trusted keys again each round (a note that does not open is exit 2).

Unlinked checkpoints. A validly signed larger checkpoint whose proof the log does not give (an
HTTP error, a refused or broken connection on the consistency route) is never accepted and never
forgotten: it is held in DIR/pending and every later round asks again for the proof linking it
to the accepted checkpoint (M -> N, or N -> M once a larger one was accepted meanwhile). A round
whose proof does not come counts against it; after ``--unlinked-rounds`` such rounds (default 3
with --follow, 1 without: a single run refuses it at once) it is refused as "unlinked" (exit 1),
and a cron-driven witness can pass ``--unlinked-rounds`` too (the count is kept in DIR). A proof
that fails, a second signed root for a pending size, or an answer that is not the proof asked
(other sizes, not a list of base64 32-byte hashes, over 64 KiB, not JSON) is refused at once.
Rounds in which the checkpoint itself cannot be fetched count for nothing (exit 3).

HTTP (``ledgerline.witness_log``): bodies are streamed and capped, a note at 1 MiB (a larger one
is refused, its first 1 MiB kept and marked as cut), a consistency answer at 64 KiB; compressed
bodies are not inflated; redirects are never followed (httpx follows none by default, and when
told to it would carry the X-API-Key header to another host).

DIR layout (``ledgerline.witness_dir``; every file written to a temporary name, fsynced, renamed):

    DIR/origin                  the log's origin, fixed by the first accepted checkpoint
    DIR/latest                  the last accepted signed note (never replaced by a rejected one)
    DIR/checkpoints/<size>      every accepted note, by tree size
    DIR/pending/<size>.note, .reason   a signed note not yet linked, why, and its rounds so far
    DIR/published               the size last handed to every configured sink
    DIR/rejected/<size>-<sha256 prefix>.note, .reason   a refused note as served (at most 1 MiB),
                                kept once; each sighting appends why (the proof too) and when

Sinks (``ledgerline.checkpoint_sinks``): ``--publish-file`` appends one JSON line per accepted
checkpoint; ``--nats-url`` publishes the note to NATS JetStream. A sink that fails is retried on
the next round (``DIR/published`` lags behind ``DIR/latest`` until it succeeds).

Exit status: 0 accepted (one line ``accepted <origin> <size> <root>``), 1 rejected (one line
``rejected: <kind>: ...``), 2 bad usage or an unreadable or changed DIR, 3 the log or a sink
could not be reached, 4 a checkpoint is held unlinked (one line ``unlinked: the log signed size N
but gives no consistency proof from M (why); kept as DIR/pending/N.note (round k of R)``).
"""

from __future__ import annotations

import base64
import contextlib
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
)
from ledgerline.checkpoint_sinks import FileSink, NatsSink, Sink, Unreachable
from ledgerline.witness_dir import Pending, StateError, WitnessDir
from ledgerline.witness_log import MAX_CHECKPOINT_BYTES, BadAnswer, LogClient

__all__ = ["LogClient", "Rejected", "StateError", "WitnessDir", "judge", "open_trusted", "witness"]

ACCEPTED, REJECTED, UNUSABLE, UNREACHABLE, UNLINKED = 0, 1, 2, 3, 4
MAX_BACKOFF_SECONDS = 300.0
ROUNDS_FOLLOWING, ROUNDS_ONCE = 3, 1

# ---- the pure part: what may be accepted after what ------------------------------------------


class Rejected(Exception):
    """A checkpoint that must not be accepted: ``kind`` names the attack it shows."""

    def __init__(
        self, kind: str, detail: str, proof: Sequence[bytes] = (), extra: Sequence[str] = ()
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.proof, self.extra = kind, detail, tuple(proof), tuple(extra)
        self.evidence: Path | None = None  # where the refused note is kept

    def reason(self) -> list[str]:
        return [str(self), *self.extra, *map(_b64, self.proof)]


def open_trusted(note: str | bytes, trusted: Sequence[VerifierKey], origin: str | None) -> Checkpoint:
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
    previous: Checkpoint | None,
    current: Checkpoint,
    proof_between: Callable[[int, int], list[bytes]],
    *,
    served: bool = True,
) -> bool:
    """Does ``current`` extend the last accepted ``previous``? True when it is larger (a new
    checkpoint), False when it is the same tree; raises ``Rejected`` otherwise. ``proof_between``
    fetches the consistency proof M -> N (asked only when 0 < M < N). A smaller ``current`` is a
    truncation when ``served`` (the log's latest); a note held pending from an earlier round,
    smaller than what was accepted since, must instead be proven a prefix of it (N -> M)."""
    if previous is None:
        return True
    m, n = previous.size, current.size
    if n < m and served:
        raise Rejected("truncated", f"a tree of {n} leaves, smaller than the {m} already accepted")
    if n == m:
        if current.root_hash != previous.root_hash:
            raise Rejected(
                "same size different root",
                f"tree {n} has root {_b64(current.root_hash)}, {_b64(previous.root_hash)} was accepted",
            )
        return False
    (low, old), (high, new) = sorted(((m, previous.root_hash), (n, current.root_hash)))
    proof = proof_between(low, high) if low else []
    if not verify_consistency(low, high, old, new, proof):
        raise Rejected("rewritten or forked", f"consistency proof {low} -> {high} fails", proof)
    return n > m


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---- one round -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    checkpoint: Checkpoint  # the last accepted after the round
    new: bool  # the round accepted a larger one
    served_linked: bool  # the log's latest is the accepted one (False: it is held pending)
    unlinked: tuple[str, ...] = ()  # one line per checkpoint held pending

    def line(self) -> str:
        cp = self.checkpoint
        return f"accepted {cp.origin} {cp.size} {_b64(cp.root_hash)}"


class _Round:
    """Links signed notes to the last accepted checkpoint, keeping what it accepts, holds and refuses."""

    def __init__(self, log: LogClient, directory: WitnessDir, latest: Checkpoint | None, bound: int) -> None:
        self.log, self.directory, self.latest, self.bound = log, directory, latest, bound
        self.new = False
        self.unlinked: list[str] = []

    def refuse(self, note: bytes, rejection: Rejected) -> Rejected:
        with contextlib.suppress(OSError):  # the refusal stands even if DIR cannot keep it
            rejection.evidence = self.directory.reject(note, rejection.reason())
        return rejection

    def proof(self, first: int, second: int) -> list[bytes]:
        try:
            return self.log.consistency(first, second)
        except BadAnswer as error:
            answer = f"answer {_b64(error.answer)}"
            raise Rejected("bad consistency answer", str(error), extra=[answer]) from None

    def link(self, note: bytes, checkpoint: Checkpoint, *, served: bool, rounds: int = 0) -> bool:
        """Accept, keep as the same tree, hold pending or refuse ``checkpoint``; True when linked."""
        try:
            new = judge(self.latest, checkpoint, self.proof, served=served)
        except Unreachable as why:
            self.hold(note, checkpoint, str(why), rounds + 1)
            return False
        except Rejected as rejection:
            self.refuse(note, rejection)
            self.directory.release(checkpoint.size)  # kept in rejected/ now
            raise
        if new:
            self.directory.accept(note, checkpoint)
            self.latest, self.new = checkpoint, True
        self.directory.release(checkpoint.size)
        return True

    def hold(self, note: bytes, checkpoint: Checkpoint, why: str, rounds: int) -> None:
        assert self.latest is not None, "a first checkpoint needs no proof"
        m, n = self.latest.size, checkpoint.size
        gap = f"from {m}" if n > m else f"from it to {m}"
        unlinked = f"the log signed size {n} but gives no consistency proof {gap}"
        if rounds >= self.bound:
            counted = f"{rounds} round{'s' if rounds > 1 else ''}"
            rejection = self.refuse(note, Rejected("unlinked", f"{unlinked} ({why}; {counted})"))
            self.directory.release(n)
            raise rejection
        kept = self.directory.hold(note, n, f"unlinked: {unlinked} ({why})", rounds)
        self.unlinked.append(f"unlinked: {unlinked} ({why}); kept as {kept} (round {rounds} of {self.bound})")

    def split(self, pending: Pending, note: bytes, checkpoint: Checkpoint) -> Rejected:
        """Two signed roots for one size: the one held pending and the one served now."""
        n, earlier, now = checkpoint.size, pending.checkpoint.root_hash, checkpoint.root_hash
        detail = f"the log signed tree {n} with root {_b64(now)} and, in an earlier round, {_b64(earlier)}"
        rejection = Rejected("same size different root", detail)
        self.refuse(pending.note, rejection)
        self.refuse(note, rejection)
        self.directory.release(n)
        return rejection


def witness_round(
    log: LogClient,
    directory: WitnessDir,
    trusted: Sequence[VerifierKey],
    sinks: Sequence[Sink] = (),
    unlinked_rounds: int = ROUNDS_ONCE,
) -> Outcome:
    """Fetch, check and keep the log's latest checkpoint (and link the ones held pending), then
    hand the last accepted to the sinks (``Rejected``, ``Unreachable`` or ``StateError`` otherwise)."""
    body = log.checkpoint()
    with directory.locked():
        origin, latest = directory.latest(trusted)
        held = directory.pending(trusted, origin)
        if held and latest is None:
            raise StateError(f"{directory.path / 'pending'} holds notes but nothing was accepted")
        round_ = _Round(log, directory, latest, unlinked_rounds)
        if body.cut:
            cap = MAX_CHECKPOINT_BYTES
            detail = f"over {cap} bytes served (a note is at most 1 MiB): the first {cap} kept, cut there"
            raise round_.refuse(body.data, Rejected("oversized checkpoint", detail))
        try:
            checkpoint = open_trusted(body.data, trusted, origin)
        except Rejected as rejection:
            raise round_.refuse(body.data, rejection) from None
        served_rounds = 0
        for pending in held:  # smallest first: each linked one may become the accepted one
            if pending.checkpoint.size != checkpoint.size:
                round_.link(pending.note, pending.checkpoint, served=False, rounds=pending.rounds)
            elif pending.checkpoint.root_hash != checkpoint.root_hash:
                raise round_.split(pending, body.data, checkpoint)
            else:
                served_rounds = pending.rounds
        linked = round_.link(body.data, checkpoint, served=True, rounds=served_rounds)
        accepted = round_.latest
        assert accepted is not None, "a first checkpoint is always linked"
        if sinks and directory.published() != accepted.size:
            note = directory.latest_note().decode("utf-8")  # it opened: UTF-8
            for sink in sinks:
                sink.publish(accepted, note)
            directory.mark_published(accepted.size)
    return Outcome(accepted, round_.new, linked, tuple(round_.unlinked))


# ---- the command ---------------------------------------------------------------------------------


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
DIR_HELP = "Where accepted, pending (unlinked) and rejected checkpoints are kept."
API_KEY_HELP = "A key holding audit_logs:read (the environment variable keeps it off the command line)."
ROUNDS_HELP = (
    "Rounds a larger signed checkpoint may go without a consistency proof from the accepted one "
    f"before it is refused (exit 1) [default: {ROUNDS_FOLLOWING} with --follow, {ROUNDS_ONCE} without]."
)


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
@click.option("--unlinked-rounds", type=click.IntRange(min=1), help=ROUNDS_HELP)
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
    unlinked_rounds: int | None,
) -> None:
    """Check the log's latest checkpoint against the last one kept in DIR (consistency proof),
    keep it and publish it; exit 1 when the log was rewritten, truncated or forked, or keeps a
    signed checkpoint unlinked to the accepted one (exit 4 while it is held pending)."""
    trusted = _verifier_keys(vkeys)
    sinks: list[Sink] = [FileSink(publish_file)] if publish_file else []
    sinks += [NatsSink(nats_url)] if nats_url else []
    bound = unlinked_rounds or (ROUNDS_FOLLOWING if follow else ROUNDS_ONCE)
    # An embedding program (or a test) may hand in its own HTTP client: ctx.obj["http_client"].
    client: httpx.Client | None = (ctx.obj or {}).get("http_client")
    log = LogClient(url, api_key, client)
    run = _Runner(log, WitnessDir(directory), trusted, sinks, bound)
    try:
        ctx.exit(run.follow(interval) if follow else run.once(always_print=True))
    finally:
        log.close()


@dataclass(frozen=True)
class _Runner:
    log: LogClient
    directory: WitnessDir
    trusted: Sequence[VerifierKey]
    sinks: Sequence[Sink]
    bound: int

    def once(self, *, always_print: bool) -> int:
        try:
            outcome = witness_round(self.log, self.directory, self.trusted, self.sinks, self.bound)
        except Rejected as rejection:
            kept = f" (kept as {rejection.evidence})" if rejection.evidence else " (could not be kept)"
            click.echo(f"rejected: {rejection}{kept}", err=True)
            return REJECTED
        except Unreachable as error:
            click.echo(f"error: {error}", err=True)
            return UNREACHABLE
        except (StateError, OSError) as error:
            click.echo(f"error: {self.directory.path}: {error}", err=True)
            return UNUSABLE
        if outcome.new or (always_print and outcome.served_linked):
            click.echo(outcome.line())
        for line in outcome.unlinked:
            click.echo(line, err=True)
        return UNLINKED if outcome.unlinked else ACCEPTED

    def follow(self, interval: float) -> int:
        stop = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: stop.set())
        try:
            failures, first = 0, True
            while not stop.is_set():
                code = self.once(always_print=first)
                if code in (REJECTED, UNUSABLE):
                    return code
                failures = min(failures + 1, 16) if code == UNREACHABLE else 0
                first = first and code != ACCEPTED
                top = max(interval, MAX_BACKOFF_SECONDS)
                delay = min(interval * 2**failures, top) if failures else interval
                if failures:
                    click.echo(f"retrying in {delay:.1f}s (failure {failures} in a row)", err=True)
                stop.wait(delay)
            return ACCEPTED
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
