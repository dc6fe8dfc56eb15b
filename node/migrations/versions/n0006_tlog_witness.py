"""transparency-log witness: reports the coordinator acknowledged, last verified checkpoint

Revision ID: n0006
Revises: n0005
Create Date: 2026-12-05

Issue 15: `libra node log verify` checks that every report this node delivered is in the
coordinator's log and that each checkpoint extends the last one it saw. Reports delivered before
this revision are not recorded (the log starts with this revision on the coordinator too).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n0006"
down_revision = "n0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tlog_sent",
        sa.Column("report_id", sa.String(), nullable=False),
        sa.Column("node_id", sa.String(), nullable=False),
        sa.Column("payload_sha256", sa.String(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=False),
        sa.Column("verified_size", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("report_id"),
    )
    op.create_table(
        "tlog_witness",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("public_key", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("verified_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("tlog_witness")
    op.drop_table("tlog_sent")
