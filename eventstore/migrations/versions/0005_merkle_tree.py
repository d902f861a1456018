"""The event log's RFC 9162 Merkle tree and its C2SP checkpoints replace the seal chain.

Every perfect subtree is a row of ``audit_tree_nodes`` (append-only), extended in each append's
transaction from now on; the events stored before are covered here, under the store's write
lock. Signed checkpoints (C2SP tlog-checkpoint notes) go to ``audit_tree_checkpoints``. The seal
chain's tables go: the tree covers the same stored records, and every check they allowed.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from eventstore.audit_chain.tree import backfill
from eventstore.migrations.append_only import make_append_only

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_tree_checkpoints",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    make_append_only(("audit_tree_nodes", "audit_tree_checkpoints"))
    for table in ("audit_checkpoints", "audit_seals"):
        op.drop_table(table)
    backfill(op.get_bind())
