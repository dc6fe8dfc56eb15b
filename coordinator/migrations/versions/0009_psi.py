"""PSI-cardinality relay (issue 15): sessions and their opaque step messages

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "psi_sessions",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("initiator", sa.String(length=63), nullable=False),
        sa.Column("responder", sa.String(length=63), nullable=False),
        sa.Column("family", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("offer", sa.Text(), nullable=False),
        sa.Column("consent", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["initiator"], ["nodes.node_id"]),
        sa.ForeignKeyConstraint(["responder"], ["nodes.node_id"]),
        sa.PrimaryKeyConstraint("session_id"),
    )
    with op.batch_alter_table("psi_sessions") as batch:
        batch.create_index("ix_psi_sessions_initiator", ["initiator"])
        batch.create_index("ix_psi_sessions_responder", ["responder"])
        batch.create_index("ix_psi_sessions_expires_at", ["expires_at"])
    op.create_table(
        "psi_messages",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.String(length=63), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("body_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["psi_sessions.session_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id", "sender", "step"),
    )


def downgrade() -> None:
    op.drop_table("psi_messages")
    op.drop_table("psi_sessions")
