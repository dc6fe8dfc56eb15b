"""discovery: candidates, negative list, flagged entries, held sightings; video counts

Revision ID: n0007
Revises: n0006
Create Date: 2026-12-05

Issue 14: unknown images found beside known ones become candidates for an analyst's review
(node/discovery); rejected images' hashes form a negative list; list entries that match
rejected images can be flagged and disabled; the flood guard holds sightings out of reports.
A cycle counts its candidates, suppressed matches and held sightings. Issue 13: a cycle keeps
its video counts, and each analysed URL whether it was a video (a resumed cycle counts them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n0007"
down_revision = "n0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=True),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("first_cycle_id", sa.Integer(), nullable=False),
        sa.Column("last_cycle_id", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=False),
        sa.Column("page_url", sa.Text(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("server_ip", sa.String(), nullable=True),
        sa.Column("country", sa.String(), nullable=False),
        sa.Column("asn", sa.Integer(), nullable=False),
        sa.Column("hoster", sa.String(), nullable=False),
        sa.Column("media", sa.String(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("sha1", sa.Text(), nullable=True),
        sa.Column("md5", sa.Text(), nullable=True),
        sa.Column("pdq", sa.Text(), nullable=True),
        sa.Column("pdq_quality", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(), nullable=True),
        sa.Column("bytes", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("entry_ids", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["cluster_id"], ["candidate.id"]),
        sa.ForeignKeyConstraint(["first_cycle_id"], ["crawl_cycle.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("candidate", schema=None) as batch_op:
        for column in (
            "cluster_id",
            "decided_at",
            "first_cycle_id",
            "first_seen_at",
            "score",
            "sha256",
            "state",
        ):
            batch_op.create_index(batch_op.f(f"ix_candidate_{column}"), [column], unique=False)
        batch_op.create_index("ix_candidate_state_score", ["state", "score"], unique=False)
    op.create_table(
        "negative_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["candidate_id"], ["candidate.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("family", "value", name="uq_negative_entry_family_value"),
    )
    with op.batch_alter_table("negative_entry", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_negative_entry_candidate_id"), ["candidate_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_negative_entry_family"), ["family"], unique=False)
    op.create_table(
        "entry_flag",
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("rejected_hits", sa.Integer(), nullable=False),
        sa.Column("flagged_at", sa.DateTime(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(), nullable=True),
        sa.Column("disabled_by", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["entry_id"], ["list_entry.id"]),
        sa.PrimaryKeyConstraint("entry_id"),
    )
    with op.batch_alter_table("entry_flag", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_entry_flag_disabled_at"), ["disabled_at"], unique=False
        )
    op.create_table(
        "held_sighting",
        sa.Column("sighting_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("held_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["entry_id"], ["list_entry.id"]),
        sa.ForeignKeyConstraint(["sighting_id"], ["sighting.id"]),
        sa.PrimaryKeyConstraint("sighting_id"),
    )
    with op.batch_alter_table("held_sighting", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_held_sighting_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_held_sighting_state"), ["state"], unique=False)
    with op.batch_alter_table("crawl_cycle", schema=None) as batch_op:
        for column in ("videos_found", "videos_hashed", "candidates", "suppressed", "held"):
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("cycle_image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("media", sa.String(), nullable=False, server_default="image"))


def downgrade() -> None:
    with op.batch_alter_table("cycle_image", schema=None) as batch_op:
        batch_op.drop_column("media")
    with op.batch_alter_table("crawl_cycle", schema=None) as batch_op:
        for column in ("held", "suppressed", "candidates", "videos_hashed", "videos_found"):
            batch_op.drop_column(column)
    op.drop_table("held_sighting")
    op.drop_table("entry_flag")
    op.drop_table("negative_entry")
    op.drop_table("candidate")
