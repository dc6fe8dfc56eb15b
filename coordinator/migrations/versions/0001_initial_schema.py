"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.String(length=1000), nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("entry_hash"),
    )
    op.create_table(
        "invitations",
        sa.Column("invitation_id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_node", sa.String(length=63), nullable=True),
        sa.PrimaryKeyConstraint("invitation_id"),
    )
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("operator", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=True),
        sa.Column("x25519_public_key", sa.String(length=64), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("node_id"),
    )
    op.create_table(
        "node_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.node_id"],
        ),
        sa.PrimaryKeyConstraint("key_id"),
    )
    with op.batch_alter_table("node_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_node_keys_node_id"), ["node_id"], unique=False)

    op.create_table(
        "sealed_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recipient_node", sa.String(length=63), nullable=False),
        sa.Column("sponsor_node", sa.String(length=63), nullable=False),
        sa.Column("recipient_x25519", sa.String(length=64), nullable=False),
        sa.Column("sealed_blob", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipient_node"],
            ["nodes.node_id"],
        ),
        sa.ForeignKeyConstraint(
            ["sponsor_node"],
            ["nodes.node_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recipient_node", "sponsor_node", name="uq_sealed_pair"),
    )
    with op.batch_alter_table("sealed_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sealed_keys_recipient_node"), ["recipient_node"], unique=False
        )

    op.create_table(
        "reports",
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["node_keys.key_id"],
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.node_id"],
        ),
        sa.PrimaryKeyConstraint("report_id"),
        sa.UniqueConstraint("node_id", "sequence", name="uq_reports_node_sequence"),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_node_id"), ["node_id"], unique=False)
        batch_op.create_index("ix_reports_period", ["period_start", "period_end"], unique=False)

    op.create_table(
        "cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("asn", sa.BigInteger(), nullable=False),
        sa.Column("hoster", sa.String(length=200), nullable=False),
        sa.Column("hash_family", sa.String(length=16), nullable=False),
        sa.Column("matches", sa.BigInteger(), nullable=False),
        sa.Column("distinct", sa.BigInteger(), nullable=False),
        sa.Column("sketch", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "report_id", "country", "asn", "hoster", "hash_family", name="uq_cells_report_key"
        ),
    )
    op.create_table(
        "denominators",
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("pages_fetched", sa.BigInteger(), nullable=False),
        sa.Column("images_hashed", sa.BigInteger(), nullable=False),
        sa.Column("hosts_seen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.report_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("report_id"),
    )


def downgrade() -> None:

    op.drop_table("denominators")
    op.drop_table("cells")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_period")
        batch_op.drop_index(batch_op.f("ix_reports_node_id"))

    op.drop_table("reports")
    with op.batch_alter_table("sealed_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sealed_keys_recipient_node"))

    op.drop_table("sealed_keys")
    with op.batch_alter_table("node_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_keys_node_id"))

    op.drop_table("node_keys")
    op.drop_table("nodes")
    op.drop_table("invitations")
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
