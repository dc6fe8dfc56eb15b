"""removal statistics and attribution sources of reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "removals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("asn", sa.BigInteger(), nullable=False),
        sa.Column("hoster", sa.String(length=200), nullable=False),
        sa.Column("notices_sent", sa.BigInteger(), nullable=False),
        sa.Column("urls_noticed", sa.BigInteger(), nullable=False),
        sa.Column("removed", sa.BigInteger(), nullable=False),
        sa.Column("removed_within_24h", sa.BigInteger(), nullable=False),
        sa.Column("removed_within_72h", sa.BigInteger(), nullable=False),
        sa.Column("median_seconds", sa.BigInteger(), nullable=True),
        sa.Column("p90_seconds", sa.BigInteger(), nullable=True),
        sa.Column("removal_sketch", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id", "country", "asn", "hoster", name="uq_removals_report_key"),
    )
    op.create_table(
        "attribution_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("attribution_sources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_attribution_sources_report_id"), ["report_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("attribution_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attribution_sources_report_id"))
    op.drop_table("attribution_sources")
    op.drop_table("removals")
