"""Crypto-shredding: personal data in events is encrypted with its subject's data key.

Each data subject (a user) has a random AES-256 key, stored wrapped by a key-encryption key
derived from the server secret in ``data_keys``, the one mutable table. Erasing a subject sets
its key to NULL: every event and snapshot that holds that subject's data then decodes as
``[erased]``, while the stored events stay byte-for-byte untouched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Transcoding
from sqlalchemy.engine import Engine

from domain.values import ERASED, AuditEnvelope, PersonalData
from eventstore.database import writing

logger = logging.getLogger(__name__)
metadata = sa.MetaData()

data_keys = sa.Table(
    "data_keys",
    metadata,
    sa.Column("subject_id", sa.Uuid(), primary_key=True),
    sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),  # NULL once erased
    sa.Column("kek_id", sa.String(16), nullable=False),  # which key-encryption key wrapped it
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
)

_ERASED_KEY = object()


class MissingDataKeyError(RuntimeError):
    """Personal data whose subject has no key row at all: the store is damaged."""


class WrongSecretKeyError(RuntimeError):
    """The data key was wrapped under another LEDGERLINE_SECRET_KEY than the one configured."""


_SUBJECT = re.compile(r'"s":"([0-9a-f]{32})"')  # a sealed value's subject, as Sealer.seal writes it
CIPHERTEXT_FORMAT = 1  # {"v": 1, "s": subject hex, "c": base64(nonce + AES-256-GCM(value, aad=subject))}
_AS_WRITTEN = re.compile(rf"{CIPHERTEXT_FORMAT}\|[0-9a-f]{{32}}\|[A-Za-z0-9+/=]*")  # v|s|c of a stored value
WAL_CHECKPOINT_TRIES = 50


def derive_key(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"ledgerline:{purpose}".encode(), hashlib.sha256).digest()


class DataKeyStore:
    """Data keys per subject, cached per process for ``cache_seconds``.

    An erasure is final in the cache: a process that follows the event stream calls ``forget``
    on each ``User.Erased`` it reads, so another process's erasure is seen from its event on;
    a process that does not follow the stream sees it once the entry expires (``cache_seconds``).
    """

    def __init__(self, engine: Engine, secret: bytes, *, cache_seconds: float = 5.0) -> None:
        self._engine = engine
        kek = derive_key(secret, "data-key-wrapping")
        self._kek = AESGCM(kek)
        self.read_table_key = derive_key(secret, "read-table-mac")  # Sealer.vouch
        self.kek_id = hashlib.sha256(kek).hexdigest()[:16]
        self._cache_seconds = cache_seconds
        self._cache: OrderedDict[UUID, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    # ---- public -----------------------------------------------------------------------------

    def cipher_for_writing(self, subject_id: UUID) -> AESGCM | None:
        """The subject's cipher, creating its key on first use; None once erased."""
        cipher = self._cached_or_loaded(subject_id)
        if cipher is None:
            self._create(subject_id)
            cipher = self._load(subject_id)
        return None if cipher is _ERASED_KEY else cipher

    def cipher_for_reading(self, subject_id: UUID) -> AESGCM | None:
        cipher = self._cached_or_loaded(subject_id)
        if cipher is None:
            raise MissingDataKeyError(f"no data key for subject {subject_id}")
        return None if cipher is _ERASED_KEY else cipher

    def erase(self, subject_id: UUID) -> None:
        """Destroy the subject's key (idempotent). Nothing of theirs decrypts afterwards."""
        now = datetime.now(UTC)
        with writing(self._engine) as conn:
            updated = conn.execute(
                data_keys.update()
                .where(data_keys.c.subject_id == subject_id)
                .values(wrapped_key=None, erased_at=sa.func.coalesce(data_keys.c.erased_at, now))
            ).rowcount
            if not updated:
                conn.execute(
                    data_keys.insert().values(
                        subject_id=subject_id, kek_id=self.kek_id, created_at=now, erased_at=now
                    )
                )
        if self._engine.dialect.name == "sqlite":
            self._truncate_wal()
        self.forget(subject_id)

    def forget(self, subject_id: UUID) -> None:
        """The subject was erased (by this or another process): nothing of theirs decrypts here
        from now on, even before the stored key is destroyed."""
        with self._lock:
            self._cache[subject_id] = (time.monotonic() + self._cache_seconds, _ERASED_KEY)
            self._cache.move_to_end(subject_id)

    def check_secret(self) -> None:
        """Refuse to start with another secret than the one the stored keys were wrapped under
        (personal data is decrypted only when used, so a wrong secret would show up late)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(data_keys.c.subject_id).where(data_keys.c.wrapped_key.is_not(None)).limit(1)
            ).first()
        if row is not None:
            self._load(row.subject_id)

    def is_erased(self, subject_id: UUID) -> bool:
        """Whether the stored key is destroyed (the store's word: ``forget`` may be ahead of it)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(data_keys.c.wrapped_key).where(data_keys.c.subject_id == subject_id)
            ).first()
        return row is not None and row.wrapped_key is None

    def _truncate_wal(self) -> None:
        """Copy the WAL into the database (where secure_delete zeroed the key) and empty it.

        A checkpoint cannot finish while a reader holds an old snapshot; retry for a while,
        then leave it to SQLite's next automatic checkpoint and say so.
        """
        for _ in range(WAL_CHECKPOINT_TRIES):
            with self._engine.connect() as conn:
                busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            if not busy:
                return
            time.sleep(0.1)
        logger.warning("erased a data key, but readers kept the SQLite WAL busy; it is emptied later")

    # ---- internals --------------------------------------------------------------------------

    def _cached_or_loaded(self, subject_id: UUID) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(subject_id)
            if hit is not None and hit[0] > now:
                return hit[1]
        return self._load(subject_id)

    def is_cached(self, subject_id: UUID) -> bool:
        """Whether reading this subject's personal data needs no query now."""
        with self._lock:
            hit = self._cache.get(subject_id)
            return hit is not None and hit[0] > time.monotonic()

    def preload(self, subject_ids: Iterable[UUID]) -> None:
        """Load the keys of these subjects that are not cached, in one query (a page of audit
        entries names many subjects)."""
        now = time.monotonic()
        with self._lock:
            missing = {s for s in subject_ids if (hit := self._cache.get(s)) is None or hit[0] <= now}
        if not missing:
            return
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(data_keys.c.subject_id, data_keys.c.wrapped_key, data_keys.c.kek_id).where(
                    data_keys.c.subject_id.in_(missing)
                )
            ).all()
        for row in rows:
            self._remember(row.subject_id, row)

    def _load(self, subject_id: UUID) -> Any:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(data_keys.c.wrapped_key, data_keys.c.kek_id).where(
                    data_keys.c.subject_id == subject_id
                )
            ).first()
        if row is None:
            return None
        return self._remember(subject_id, row)

    def _remember(self, subject_id: UUID, row: Any) -> Any:
        if row.wrapped_key is not None and row.kek_id != self.kek_id:
            raise WrongSecretKeyError(
                f"the data key of {subject_id} was wrapped under key {row.kek_id}, not {self.kek_id}: "
                "is LEDGERLINE_SECRET_KEY the one this database was created with?"
            )
        cipher: Any = (
            _ERASED_KEY if row.wrapped_key is None else AESGCM(self._unwrap(subject_id, row.wrapped_key))
        )
        with self._lock:
            cached = self._cache.get(subject_id)
            if cached is not None and cached[1] is _ERASED_KEY:
                return _ERASED_KEY  # a read that raced an erasure must not bring the key back
            self._cache[subject_id] = (time.monotonic() + self._cache_seconds, cipher)
            self._cache.move_to_end(subject_id)
            while len(self._cache) > 100_000:
                self._cache.popitem(last=False)
        return cipher

    def _create(self, subject_id: UUID) -> None:
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        wrapped = nonce + self._kek.encrypt(nonce, key, subject_id.bytes)
        insert = _insert_ignoring_conflict(self._engine)
        with writing(self._engine) as conn:
            conn.execute(
                insert(data_keys).values(
                    subject_id=subject_id,
                    wrapped_key=wrapped,
                    kek_id=self.kek_id,
                    created_at=datetime.now(UTC),
                )
            )

    def _unwrap(self, subject_id: UUID, wrapped: bytes) -> bytes:
        return self._kek.decrypt(wrapped[:12], wrapped[12:], subject_id.bytes)


def _insert_ignoring_conflict(engine: Engine) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return lambda table: pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return lambda table: sqlite_insert(table).on_conflict_do_nothing()


class StoredPersonalData(PersonalData):
    """Personal data as read from the store: decrypted each time ``value`` is read (never kept
    in plain, so a cached aggregate reads ``[erased]`` as soon as its key is gone), and encoded
    again as the very ciphertext it was read as: projections that only copy it (sealed) into a
    read table never decrypt it."""

    __slots__ = ("_keys", "stored")
    stored: dict[str, Any]
    _keys: DataKeyStore

    def __init__(self, subject_id: UUID, stored: dict[str, Any], keys: DataKeyStore) -> None:
        object.__setattr__(self, "subject_id", subject_id)
        object.__setattr__(self, "stored", stored)
        object.__setattr__(self, "_keys", keys)

    @property
    def value(self) -> str:
        cipher = self._keys.cipher_for_reading(self.subject_id) if self.stored["c"] else None
        if cipher is None:
            return ERASED
        sealed = base64.b64decode(self.stored["c"])
        return cipher.decrypt(sealed[:12], sealed[12:], self.subject_id.bytes).decode()

    def __copy__(self) -> StoredPersonalData:
        return self  # immutable: aggregates copied out of the cache share it

    def __deepcopy__(self, memo: dict[int, Any]) -> StoredPersonalData:
        return self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PersonalData):
            return (self.subject_id, self.value) == (other.subject_id, other.value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.subject_id, self.value))


class PersonalDataAsCiphertext(Transcoding):
    """Stores ``PersonalData`` as ciphertext (``CIPHERTEXT_FORMAT``), never in plain; reads it
    back as ``StoredPersonalData`` (decrypted when used)."""

    type: type = PersonalData
    name = "personal_data"

    def __init__(self, keys: DataKeyStore) -> None:
        self.keys = keys

    def encode(self, obj: PersonalData) -> dict[str, Any]:
        if isinstance(obj, StoredPersonalData):
            return obj.stored
        cipher = self.keys.cipher_for_writing(obj.subject_id)
        if cipher is None or obj.is_erased:
            return {"v": CIPHERTEXT_FORMAT, "s": obj.subject_id.hex, "c": ""}
        nonce = os.urandom(12)
        sealed = nonce + cipher.encrypt(nonce, obj.value.encode(), obj.subject_id.bytes)
        return {"v": CIPHERTEXT_FORMAT, "s": obj.subject_id.hex, "c": base64.b64encode(sealed).decode()}

    def decode(self, data: dict[str, Any]) -> PersonalData:
        if data.get("v") != CIPHERTEXT_FORMAT:
            raise ValueError(f"unknown personal-data format {data.get('v')!r}")
        return StoredPersonalData(UUID(data["s"]), data, self.keys)


class StoredPersonalDataAsCiphertext(PersonalDataAsCiphertext):
    """The same transcoding for values read from the store (the library looks types up exactly)."""

    type = StoredPersonalData


ENVELOPE_FIELDS = (
    "actor_id", "actor_type", "credential_id", "request_id", "correlation_id", "causation_id",
    "ip_address", "user_agent",
)  # fmt: skip


class AuditEnvelopeAsDict(Transcoding):
    type = AuditEnvelope
    name = "audit"

    def encode(self, obj: AuditEnvelope) -> dict[str, Any]:
        return {field: getattr(obj, field) for field in ENVELOPE_FIELDS}

    def decode(self, data: dict[str, Any]) -> AuditEnvelope:
        return AuditEnvelope(**{field: data[field] for field in ENVELOPE_FIELDS if field in data})


class Sealer:
    """Personal data for read tables: sealed like in events, revealed at read time, so an
    erasure reaches every copy without touching a row; and rows vouched for (``vouch``)."""

    def __init__(self, keys: DataKeyStore) -> None:
        self._transcoding = PersonalDataAsCiphertext(keys)
        self._keys = keys

    def seal(self, data: PersonalData | None) -> str | None:
        if data is None:
            return None
        return _sealed_text(self._transcoding.encode(data))

    def seal_stored(self, stored: dict[str, Any]) -> str:
        """``seal`` of personal data as an event stores it. The form every event is written in
        (format 1, a hex subject, base64 ciphertext) is recognised at once; any other goes the
        way decoding takes it (which refuses another format and a subject that is no UUID)."""
        v, subject, ciphertext = stored.get("v"), stored.get("s"), stored.get("c")
        as_written = type(v) is int and type(subject) is str and type(ciphertext) is str
        if not (as_written and _AS_WRITTEN.fullmatch(f"{v}|{subject}|{ciphertext}")):
            return _sealed_text(self._transcoding.encode(self._transcoding.decode(stored)))
        return _sealed_text(stored)

    def vouch(self, content: bytes) -> str:
        """A MAC of a read-table row's content under a key the database does not hold: a row
        whose MAC fails was not written by a holder of the secret key (hex, 64 characters)."""
        return hmac.new(self._keys.read_table_key, content, hashlib.sha256).hexdigest()

    def preload(self, sealed: Iterable[str]) -> None:
        """Fetch, in one query, the keys that revealing these sealed values will need."""
        self._transcoding.keys.preload(UUID(match) for text in sealed for match in _SUBJECT.findall(text))

    def reveal(self, sealed: str | None) -> str | None:
        return None if sealed is None else self._transcoding.decode(json.loads(sealed)).value


def _sealed_text(stored: dict[str, Any]) -> str:
    """A stored personal value as a read table holds it (hex and base64 inside: nothing to escape)."""
    return f'{{"v":{stored["v"]},"s":"{stored["s"]}","c":"{stored["c"]}"}}'
