"""API-key strings: product prefix, 256-bit random secret, CRC32 checksum (base62).

``llk_`` + 43 base62 characters (256 bits) + 6 base62 characters of CRC32. A typo or a
truncated key fails the checksum and is refused without touching the database. Only the
SHA-256 digest of the whole key is stored: 256 random bits need no slow hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass

PRODUCT_PREFIX = "llk_"
SECRET_LENGTH = 43  # 62**43 > 2**256
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
KEY_PREFIX_LENGTH = 12
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHAPE = re.compile(rf"^{PRODUCT_PREFIX}[0-9A-Za-z]{{{SECRET_LENGTH + CHECKSUM_LENGTH}}}$")


@dataclass(frozen=True)
class NewApiKey:
    key: str  # shown to its owner once, never stored

    @property
    def key_prefix(self) -> str:
        return self.key[:KEY_PREFIX_LENGTH]

    @property
    def digest(self) -> str:
        return digest_of(self.key)


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        chars.append(_ALPHABET[remainder])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate_api_key() -> NewApiKey:
    body = PRODUCT_PREFIX + _base62(secrets.randbits(256), SECRET_LENGTH)
    return NewApiKey(body + _checksum(body))


def is_well_formed(key: str) -> bool:
    """Shape and checksum; no lookup."""
    if not _SHAPE.match(key):
        return False
    body, checksum = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    return secrets.compare_digest(_checksum(body), checksum)


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
