"""The chain's two append-only tables (created by migration 0003; database triggers refuse
UPDATE, DELETE and TRUNCATE).

``audit_seals``: one row per stored event, in position order. ``record_digest`` is the SHA-256 of
the event's full stored record; ``seal`` is SHA-256(previous seal || record_digest).
``audit_checkpoints``: every N events or T seconds, the head seal signed with Ed25519.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

audit_seals = sa.Table(
    "audit_seals",
    metadata,
    sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("record_digest", sa.LargeBinary(32), nullable=False),
    sa.Column("seal", sa.LargeBinary(32), nullable=False),
)

audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("head_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    sa.Column("signature", sa.LargeBinary(64), nullable=False),
)

APPEND_ONLY_TABLES = ("audit_seals", "audit_checkpoints")
