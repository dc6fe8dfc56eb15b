"""coverage: analysed images placed like sightings; pages fetched per hoster

Revision ID: n0005
Revises: n0004
Create Date: 2026-12-04

Issue 16: reports carry crawl effort per hoster (images hashed, pages fetched), so the picture
gives prevalence per 10,000 images rather than raw counts. Every analysed image is placed at
record time by the same attributor call as its sighting (country, ASN, hoster; null for images
analysed before this revision, whose cycles then report no coverage), and a finished cycle
writes its fetched pages per hoster. List entries are indexed by (list version, record): a
matched entry's record siblings name the listed item in the report's item sketches.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n0005"
down_revision = "n0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("list_entry", schema=None) as batch_op:
        batch_op.create_index(
            "ix_list_entry_version_record", ["list_version_id", "record"], unique=False
        )
    with op.batch_alter_table("analysed_image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("country", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("asn", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("hoster", sa.String(), nullable=True))
    op.create_table(
        "hoster_pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(), nullable=False),
        sa.Column("asn", sa.Integer(), nullable=False),
        sa.Column("hoster", sa.String(), nullable=False),
        sa.Column("pages_fetched", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["crawl_cycle.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cycle_id", "country", "asn", "hoster", name="uq_hoster_pages_cycle"),
    )
    with op.batch_alter_table("hoster_pages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hoster_pages_cycle_id"), ["cycle_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hoster_pages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hoster_pages_cycle_id"))
    op.drop_table("hoster_pages")
    with op.batch_alter_table("analysed_image", schema=None) as batch_op:
        batch_op.drop_column("hoster")
        batch_op.drop_column("asn")
        batch_op.drop_column("country")
    with op.batch_alter_table("list_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_list_entry_version_record")
