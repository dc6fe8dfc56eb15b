"""hash lists: media kind, source record and label index of entries; change-feed counts

Revision ID: n0003
Revises: n0002
Create Date: 2026-12-04

Issue 12: video entries (python-threatexchange video_md5 / video_sha256, NCMEC <video>) are
stored with media "video"; each entry keeps the record number it came from so that a VICS
export regroups exactly the values of one source record; NCMEC deletions and updates find
entries by their id (the label), hence the index; list versions count the entries a change
feed withdrew or re-classified.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n0003"
down_revision = "n0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("list_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("media", sa.String(), nullable=False, server_default="image"))
        batch_op.add_column(sa.Column("record", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_list_entry_label"), ["label"], unique=False)
    with op.batch_alter_table("list_version", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("withdrawn", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("reclassified", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("list_version", schema=None) as batch_op:
        batch_op.drop_column("reclassified")
        batch_op.drop_column("withdrawn")
    with op.batch_alter_table("list_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_list_entry_label"))
        batch_op.drop_column("record")
        batch_op.drop_column("media")
