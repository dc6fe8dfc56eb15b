"""matches by how they were found (issue 18): per cell, summed in the rollups

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CELL_COLUMNS = ("m_direct", "m_dihedral", "m_trimmed", "m_region")
_ROLLUP_COLUMNS = (*_CELL_COLUMNS, "m_unspecified")


def upgrade() -> None:
    # Additive only: NULL in a cell = the node did not say (every cell stored before this).
    with op.batch_alter_table("cells", schema=None) as batch_op:
        for name in _CELL_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
    with op.batch_alter_table("picture_rollups", schema=None) as batch_op:
        for name in _ROLLUP_COLUMNS:
            batch_op.add_column(
                sa.Column(name, sa.String(length=40), nullable=False, server_default="0")
            )
    # Rollups built before this revision hold only cells that did not say.
    op.execute("UPDATE picture_rollups SET m_unspecified = matches")


def downgrade() -> None:
    with op.batch_alter_table("picture_rollups", schema=None) as batch_op:
        for name in reversed(_ROLLUP_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("cells", schema=None) as batch_op:
        for name in reversed(_CELL_COLUMNS):
            batch_op.drop_column(name)
