"""DIR of ``ledgerline audit witness``: what it accepted, what it holds pending and what it
refused (the layout and the rules are in ``ledgerline.witness``). Nothing read back from DIR is
trusted on its own: the accepted and pending notes are opened with the trusted keys again, and
anything that does not open is a ``StateError`` (exit 2), never a silent start-over."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eventstore.audit_chain.note import (
    Checkpoint,
    NoteError,
    VerifierKey,
    open_checkpoint,
    parse_note,
)

MAX_REASON_BYTES = 1 << 20  # sightings of one refused note are appended up to this


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


@dataclass(frozen=True)
class Pending:
    """A signed checkpoint not (yet) linked to the accepted one, and the rounds it went unlinked."""

    note: bytes
    checkpoint: Checkpoint
    rounds: int


def _now() -> str:
    return datetime.now(UTC).isoformat()


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

    def _read(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StateError(f"cannot read {self.path / name}: {type(error).__name__}") from None

    def _open(self, name: str, note: bytes, trusted: Sequence[VerifierKey], origin: str | None) -> Checkpoint:
        try:
            return open_checkpoint(note, trusted, origin=origin)
        except NoteError as error:
            raise StateError(
                f"{self.path / name} does not open with the trusted keys ({error}): changed outside "
                "the witness, or signed by a key not passed with --public-key"
            ) from None

    def latest(self, trusted: Sequence[VerifierKey]) -> tuple[str | None, Checkpoint | None]:
        """The fixed origin and the last accepted checkpoint (both None on a new DIR)."""
        raw, note = self._read("origin"), self._read("latest")
        try:
            origin = raw.decode("utf-8").rstrip("\n") if raw is not None else None
        except UnicodeError:
            raise StateError(f"{self.path / 'origin'} is not text") from None
        if note is None:
            return origin, None
        checkpoint = self._open("latest", note, trusted, origin)
        return checkpoint.origin, checkpoint

    def latest_note(self) -> bytes:
        note = self._read("latest")
        assert note is not None, "read after latest()"
        return note

    def accept(self, note: bytes, checkpoint: Checkpoint) -> None:
        write_atomically(self.path / "checkpoints" / str(checkpoint.size), note)
        if self._read("origin") is None:
            write_atomically(self.path / "origin", f"{checkpoint.origin}\n".encode())
        write_atomically(self.path / "latest", note)  # last: the commit point

    def reject(self, data: bytes, reason: Sequence[str]) -> Path:
        """Keep a refused note (as served, at most 1 MiB) once per content; each sighting appends
        its reason and time to the ``.reason`` beside it."""
        try:
            size = str(Checkpoint.parse(parse_note(data).text).size)
        except NoteError:
            size = "unparsed"
        stem = f"{size}-{hashlib.sha256(data).hexdigest()[:16]}"
        kept, why = self.path / "rejected" / f"{stem}.note", self.path / "rejected" / f"{stem}.reason"
        block = "".join(f"{' '.join(line.split())}\n" for line in reason) + f"seen {_now()}\n"
        old = self._read(f"rejected/{stem}.reason") or b""
        if len(old) + len(block) <= MAX_REASON_BYTES:
            write_atomically(why, old + block.encode())
        if not kept.exists():
            write_atomically(kept, data)
        return kept

    def pending(self, trusted: Sequence[VerifierKey], origin: str | None) -> list[Pending]:
        """The notes held pending, smallest first, each opened with the trusted keys again."""
        held = []
        for path in sorted((self.path / "pending").glob("*.note")):
            note, reason = self._read(f"pending/{path.name}"), self._read(f"pending/{path.stem}.reason")
            rounds = re.search(rb"^rounds ([1-9][0-9]{0,8})$", reason or b"", re.MULTILINE)
            if note is None or rounds is None:
                raise StateError(f"{path} has no .reason with its rounds")
            checkpoint = self._open(f"pending/{path.name}", note, trusted, origin)
            if path.stem != str(checkpoint.size):
                raise StateError(f"{path} holds a checkpoint of size {checkpoint.size}")
            held.append(Pending(note, checkpoint, int(rounds.group(1))))
        return sorted(held, key=lambda pending: pending.checkpoint.size)

    def hold(self, note: bytes, size: int, why: str, rounds: int) -> Path:
        path = self.path / "pending" / f"{size}.note"
        write_atomically(path, note)
        write_atomically(path.with_suffix(".reason"), f"{why}\nrounds {rounds}\nlast {_now()}\n".encode())
        return path

    def release(self, size: int) -> None:
        for suffix in (".note", ".reason"):
            (self.path / "pending" / f"{size}{suffix}").unlink(missing_ok=True)

    def published(self) -> int | None:
        text = self._read("published")
        return int(text) if text and text.strip().isdigit() else None

    def mark_published(self, size: int) -> None:
        write_atomically(self.path / "published", f"{size}\n".encode())
