"""differential privacy (issue 15): the viewer tier's stored noisy releases and the privacy
budget spent per window of report periods

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New tables only: nothing was released with noise before this.
    op.create_table(
        "dp_releases",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("query_key", sa.String(length=64), nullable=False),
        sa.Column("view", sa.String(length=32), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("epsilon_micro", sa.BigInteger(), nullable=False),
        sa.Column("windows", sa.BigInteger(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_dp_releases_query_key", "dp_releases", ["query_key"])
    op.create_table(
        "dp_budget",
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_micro", sa.BigInteger(), nullable=False),
        sa.Column("releases", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("window_start"),
    )


def downgrade() -> None:
    op.drop_table("dp_budget")
    op.drop_index("ix_dp_releases_query_key", table_name="dp_releases")
    op.drop_table("dp_releases")
