"""sightings: how the match was found (direct, dihedral, trimmed, region); entries' region hashes

Revision ID: n0004
Revises: n0003
Create Date: 2026-12-04

Issue 18: copies mirrored, rotated, bordered or cropped to evade PDQ are matched by dihedral
variants, border-trimmed hashes and region hashes; each sighting records which, so that the
node can count how much material is disguised. Existing sightings were all direct matches
(dihedral matching was off by default and left no trace), hence the server default. List
entries gain their derived PDQ region hashes (encrypted like the value; null for entries
imported without them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n0004"
down_revision = "n0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sighting", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("method", sa.String(), nullable=False, server_default="direct")
        )
    with op.batch_alter_table("list_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("regions", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("list_entry", schema=None) as batch_op:
        batch_op.drop_column("regions")
    with op.batch_alter_table("sighting", schema=None) as batch_op:
        batch_op.drop_column("method")
