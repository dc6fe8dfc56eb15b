"""transparency log (issue 15): leaves (digests only), signed checkpoints, witness
cosignatures and the sequencer's state row

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New tables only: reports stored before this are not in the log (the log starts empty).
    op.create_table(
        "tlog_leaves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idx"),
        sa.UniqueConstraint("leaf_hash"),
    )
    op.create_table(
        "tlog_checkpoints",
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    op.create_table(
        "tlog_cosignatures",
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.node_id"]),
        sa.ForeignKeyConstraint(["size"], ["tlog_checkpoints.size"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("size", "node_id"),
    )
    state = op.create_table(
        "tlog_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # The one row the sequencer locks (SELECT ... FOR UPDATE): it exists from the start.
    op.bulk_insert(state, [{"id": 1, "size": 0}])


def downgrade() -> None:
    op.drop_table("tlog_state")
    op.drop_table("tlog_cosignatures")
    op.drop_table("tlog_checkpoints")
    op.drop_table("tlog_leaves")
