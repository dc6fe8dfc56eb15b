"""Theta sketches per cell and per-hoster coverage (issue 16): cells carry url_theta, items and
item_theta; a coverage table holds each report's crawl effort per hoster; the rollups keep
Theta unions and coverage sums

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ROLLUP_COUNTS = ("theta_cells", "covered", "cov_pages", "cov_images", "cov_matches")
_ROLLUP_BLOBS = ("url_theta", "cov_nodes")


def upgrade() -> None:
    # Additive only: cells stored before this carry no Theta sketch (NULL), and reports
    # before it no coverage, so rollups built earlier are right with zeros.
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("url_theta", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("items", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("item_theta", sa.Text(), nullable=True))
    op.create_table(
        "coverage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("asn", sa.BigInteger(), nullable=False),
        sa.Column("hoster", sa.String(length=200), nullable=False),
        sa.Column("pages_fetched", sa.BigInteger(), nullable=False),
        sa.Column("images_hashed", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id", "country", "asn", "hoster", name="uq_coverage_report_key"),
    )
    with op.batch_alter_table("picture_rollups", schema=None) as batch_op:
        for name in _ROLLUP_COUNTS:
            batch_op.add_column(
                sa.Column(name, sa.String(length=40), nullable=False, server_default="0")
            )
        for name in _ROLLUP_BLOBS:
            batch_op.add_column(sa.Column(name, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("picture_rollups", schema=None) as batch_op:
        for name in reversed(_ROLLUP_BLOBS):
            batch_op.drop_column(name)
        for name in reversed(_ROLLUP_COUNTS):
            batch_op.drop_column(name)
    op.drop_table("coverage")
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("item_theta")
        batch_op.drop_column("items")
        batch_op.drop_column("url_theta")
