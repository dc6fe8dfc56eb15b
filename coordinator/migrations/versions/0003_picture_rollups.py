"""materialised picture rollups and their refresh queue

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_queue",
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("report_id"),
    )
    state = op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("refreshes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "rollup_nodes",
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
        sa.UniqueConstraint("ordinal"),
    )
    op.create_table(
        "rollup_buckets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("span_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("span_end", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("level", "span_start", "span_end", name="uq_rollup_buckets_span"),
    )
    with op.batch_alter_table("rollup_buckets", schema=None) as batch_op:
        batch_op.create_index("ix_rollup_buckets_span", ["span_start", "span_end"], unique=False)
    op.create_table(
        "picture_rollups",
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("hash_family", sa.String(length=16), nullable=False),
        sa.Column("dim", sa.String(length=1), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("asn", sa.BigInteger(), nullable=False),
        sa.Column("hoster", sa.String(length=200), nullable=False),
        sa.Column("cells", sa.String(length=40), nullable=False),
        sa.Column("matches", sa.String(length=40), nullable=False),
        sa.Column("plain_distinct", sa.String(length=40), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=True),
        sa.Column("nodes", sa.LargeBinary(), nullable=False),
        sa.Column("reports", sa.String(length=40), nullable=False),
        sa.Column("pages_fetched", sa.String(length=40), nullable=False),
        sa.Column("images_hashed", sa.String(length=40), nullable=False),
        sa.Column("hosts_seen", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["rollup_buckets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("bucket_id", "hash_family", "dim", "country", "asn", "hoster"),
    )
    op.bulk_insert(state, [{"id": 1, "refreshes": 0}])
    # Reports stored before this revision get folded in by the first refresh.
    op.execute("INSERT INTO rollup_queue (report_id) SELECT report_id FROM reports")


def downgrade() -> None:
    op.drop_table("picture_rollups")
    with op.batch_alter_table("rollup_buckets", schema=None) as batch_op:
        batch_op.drop_index("ix_rollup_buckets_span")
    op.drop_table("rollup_buckets")
    op.drop_table("rollup_nodes")
    op.drop_table("rollup_state")
    op.drop_table("rollup_queue")
