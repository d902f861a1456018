"""C2SP ``signed-note`` (Ed25519) and ``tlog-checkpoint``: the text formats of the log's signed
tree heads, readable by any transparency-log tool (Go's golang.org/x/mod/sumdb/note, witnesses).

A signed note is its text (ending in a newline), a blank line, then one line per signature:

    — <key name> base64(key ID (4 bytes, big-endian) || Ed25519 signature over the text)

    key ID     = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]
    verifier key ("vkey") = <key name>+<hex key ID>+base64(0x01 || public key)

A checkpoint's text is the origin line, the tree size in decimal, the base64 root hash, then
optional non-empty extension lines, each ending in a newline.

Opening a note follows the spec: the whole note is valid UTF-8 without control characters other
than newline; key names are non-empty, without spaces or "+"; signatures from unknown keys are
ignored (a key is known when both its name and key ID match); a known key's signature that
fails rejects the note; a note no known key verified is rejected. As Go's implementation does,
more than 100 signature lines is a malformed note; so is a note over 1 MiB.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1 << 20
_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_SIZE = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = (1 << 64) - 1


class NoteError(ValueError):
    """A note or checkpoint that must not be trusted."""


class MalformedNoteError(NoteError):
    pass


class UnverifiedNoteError(NoteError):
    """Well-formed, but no signature from a trusted key."""


class InvalidSignatureError(NoteError):
    """A trusted key's signature does not verify: the note was altered or forged."""


def is_valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name) and _clean(name)


def _clean(text: str) -> bool:
    # No ASCII control characters other than newline (so no "\r", no tab).
    return all(ch >= " " or ch == "\n" for ch in text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def key_id(name: str, public_key: bytes, signature_type: int = ED25519) -> bytes:
    """The 4-byte key ID signed-note recommends (and mandates for Ed25519)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A trusted Ed25519 public key under its note key name."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise ValueError(f"invalid note key name {self.name!r}")
        if len(self.public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ED25519]) + self.public_key)}"

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        name, _, rest = vkey.partition("+")
        id_hex, _, key64 = rest.partition("+")
        key = _unb64(key64)
        if not re.fullmatch(r"[0-9a-fA-F]{8}", id_hex) or not key or not is_valid_key_name(name):
            raise ValueError("malformed verifier key")
        if key_id(name, key[1:], key[0]) != bytes.fromhex(id_hex):
            raise ValueError("the verifier key's ID does not match its name and key")
        if key[0] != ED25519 or len(key) != 33:
            raise ValueError("not an Ed25519 verifier key")
        return cls(name, key[1:])

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_SIGNATURE_PREFIX}{self.name} {_b64(self.key_id + self.signature)}\n"


class NoteSigner:
    """Signs notes with an Ed25519 key (the 32-byte seed) under a key name."""

    def __init__(self, name: str, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 signing key is 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier_key = VerifierKey(name, public)  # checks the name

    @property
    def name(self) -> str:
        return self.verifier_key.name

    def sign(self, text: str) -> NoteSignature:
        return NoteSignature(self.name, self.verifier_key.key_id, self._key.sign(text.encode()))


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class VerifiedNote:
    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def _decode(message: str | bytes) -> str:
    try:
        raw = message.encode("utf-8") if isinstance(message, str) else message
        if len(raw) > MAX_NOTE_BYTES:
            raise MalformedNoteError("note too large")
        text = raw.decode("utf-8")
    except UnicodeError:
        raise MalformedNoteError("a note is valid UTF-8") from None
    if not _clean(text):
        raise MalformedNoteError("a note holds no control characters other than newline")
    return text


def parse_note(message: str | bytes) -> Note:
    """The text and signature lines of a note, checked for form only (nothing verified)."""
    whole = _decode(message)
    split = whole.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("no blank line before the signatures")
    text, block = whole[: split + 1], whole[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNoteError("the signatures end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError("too many signatures")
    signatures: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(_SIGNATURE_PREFIX):
            raise MalformedNoteError("a signature line starts with an em dash and a space")
        name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        raw = _unb64(encoded)
        if not is_valid_key_name(name) or raw is None or len(raw) < 5:
            raise MalformedNoteError("malformed signature line")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


def open_note(message: str | bytes, known: Iterable[VerifierKey]) -> VerifiedNote:
    """Parse a note and verify it against the trusted keys (see the module's rules)."""
    note = parse_note(message)
    trusted = {(key.name, key.key_id): key for key in known}  # IDs derive from the keys
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    signed = note.text.encode()
    for signature in note.signatures:
        key = trusted.get((signature.name, signature.key_id))
        if key is None:
            if signature not in unverified:
                unverified.append(signature)
            continue
        if not key.verify(signed, signature.signature):
            raise InvalidSignatureError(f"invalid signature for key {key.name}+{key.key_id.hex()}")
        if signature not in verified:
            verified.append(signature)
    if not verified:
        raise UnverifiedNoteError("note has no verifiable signatures")
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """The signed note: ``text`` (ending in a newline), a blank line, one line per signer."""
    if not text.endswith("\n") or not _clean(text) or not signers:
        raise MalformedNoteError("a note's text ends with a newline and has no control characters")
    return text + "\n" + "".join(signer.sign(text).line() for signer in signers)


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: the tree head of ``size`` leaves with root ``root_hash``."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for line in (self.origin, *self.extensions):
            if not line or "\n" in line or not _clean(line):
                raise ValueError("checkpoint lines are non-empty, single lines without control characters")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise ValueError("a tree size is a non-negative 64-bit integer")
        if len(self.root_hash) != 32:
            raise ValueError("a root hash is 32 bytes")

    def body(self) -> str:
        lines = (self.origin, str(self.size), _b64(self.root_hash), *self.extensions)
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text[:-1].split("\n") if text.endswith("\n") else []
        if len(lines) < 3 or not all(lines):
            raise MalformedNoteError("a checkpoint is at least three non-empty lines")
        origin, size, root, *extensions = lines
        root_hash = _unb64(root)
        if not _SIZE.fullmatch(size) or int(size) > _MAX_TREE_SIZE:
            raise MalformedNoteError("the tree size is a decimal without leading zeros")
        if root_hash is None or len(root_hash) != 32 or _b64(root_hash) != root:
            raise MalformedNoteError("the root hash is the base64 of 32 bytes")
        try:
            return cls(origin, int(size), root_hash, tuple(extensions))
        except ValueError as error:
            raise MalformedNoteError(str(error)) from None


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> str:
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(
    message: str | bytes, known: Iterable[VerifierKey], *, origin: str | None = None
) -> Checkpoint:
    """A checkpoint signed by a trusted key (and, when given, of the expected origin)."""
    checkpoint = Checkpoint.parse(open_note(message, known).text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint of {checkpoint.origin!r}, not of {origin!r}")
    return checkpoint
