"""Ed25519 signatures over chain checkpoints and export bundles.

The signing key is ``LEDGERLINE_AUDIT_SIGNING_KEY`` when set, else derived from the secret key
(which the embedded default keeps in the data directory). Only the public key is needed to
verify; it is served at ``GET /audit-logs/public-key`` and printed by ``ledgerline audit public-key``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALGORITHM = "Ed25519"


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def utc(moment: datetime) -> datetime:
    """The same instant in UTC (SQLite hands stored times back without a zone: they are UTC)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def checkpoint_message(position: int, head_hash: bytes, signed_at: datetime) -> bytes:
    when = utc(signed_at).isoformat()
    return f"ledgerline-checkpoint-v1\n{position}\n{head_hash.hex()}\n{when}".encode()


class Signer:
    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 signing key is 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def is_valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
