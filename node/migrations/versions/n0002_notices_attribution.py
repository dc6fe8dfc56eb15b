"""notices, attribution snapshots and the RDAP contact cache (issue 7)

Revision ID: n0002
Revises: n0001
Create Date: 2026-11-24

New tables only: notices to hosters with their URLs, rounds, deliveries and re-checks, the
notice API's tokens, which database snapshot placed each sighting, and cached RDAP answers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n0002"
down_revision = "n0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attribution_snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("first_used_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(), nullable=False),
        sa.Column("asn", sa.Integer(), nullable=False),
        sa.Column("hoster", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decision_reason", sa.String(), nullable=True),
        sa.Column("notices_sent", sa.Integer(), nullable=False),
        sa.Column("first_sent_at", sa.DateTime(), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("blocked", sa.String(), nullable=True),
        sa.Column("contact_source", sa.String(), nullable=True),
        sa.Column("contact_reference", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_hoster"), ["hoster"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_state"), ["state"], unique=False)

    op.create_table(
        "notice_api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("token_sha256", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "rdap_contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query", sa.String(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("emails", sa.Text(), nullable=False),
        sa.Column("handle", sa.String(), nullable=True),
        sa.Column("server", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("query"),
    )
    with op.batch_alter_table("rdap_contact", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rdap_contact_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "notice_cycle",
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("processed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["crawl_cycle.id"],
        ),
        sa.PrimaryKeyConstraint("cycle_id"),
    )
    op.create_table(
        "notice_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["notice.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notice_delivery", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notice_delivery_notice_id"), ["notice_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_notice_delivery_status"), ["status"], unique=False)

    op.create_table(
        "notice_round",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("url_ids", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("report_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["notice.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("notice_id", "round", name="uq_notice_round"),
    )
    with op.batch_alter_table("notice_round", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_round_notice_id"), ["notice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_round_report_id"), ["report_id"], unique=False)

    op.create_table(
        "notice_url",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("server_ip", sa.String(), nullable=True),
        sa.Column("sighting_id", sa.Integer(), nullable=True),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("first_notice_at", sa.DateTime(), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(), nullable=True),
        sa.Column("last_outcome", sa.String(), nullable=True),
        sa.Column("last_present_at", sa.DateTime(), nullable=True),
        sa.Column("removed_at", sa.DateTime(), nullable=True),
        sa.Column("removal_reason", sa.String(), nullable=True),
        sa.Column("noticed_report_id", sa.String(), nullable=True),
        sa.Column("removal_report_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["list_entry.id"],
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["notice.id"],
        ),
        sa.ForeignKeyConstraint(
            ["sighting_id"],
            ["sighting.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notice_url", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_url_notice_id"), ["notice_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notice_url_noticed_report_id"), ["noticed_report_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notice_url_removal_report_id"), ["removal_report_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_notice_url_removed_at"), ["removed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_url_url"), ["url"], unique=False)

    op.create_table(
        "sighting_attribution",
        sa.Column("sighting_id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["sighting_id"],
            ["sighting.id"],
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["attribution_snapshot.id"],
        ),
        sa.PrimaryKeyConstraint("sighting_id"),
    )
    with op.batch_alter_table("sighting_attribution", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sighting_attribution_snapshot_id"), ["snapshot_id"], unique=False
        )

    op.create_table(
        "notice_recheck",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_url_id", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("code", sa.String(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["notice_url_id"],
            ["notice_url.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notice_recheck", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notice_recheck_notice_url_id"), ["notice_url_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notice_recheck", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_recheck_notice_url_id"))

    op.drop_table("notice_recheck")
    with op.batch_alter_table("sighting_attribution", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sighting_attribution_snapshot_id"))

    op.drop_table("sighting_attribution")
    with op.batch_alter_table("notice_url", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_url_url"))
        batch_op.drop_index(batch_op.f("ix_notice_url_removed_at"))
        batch_op.drop_index(batch_op.f("ix_notice_url_removal_report_id"))
        batch_op.drop_index(batch_op.f("ix_notice_url_noticed_report_id"))
        batch_op.drop_index(batch_op.f("ix_notice_url_notice_id"))

    op.drop_table("notice_url")
    with op.batch_alter_table("notice_round", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_round_report_id"))
        batch_op.drop_index(batch_op.f("ix_notice_round_notice_id"))

    op.drop_table("notice_round")
    with op.batch_alter_table("notice_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_delivery_status"))
        batch_op.drop_index(batch_op.f("ix_notice_delivery_notice_id"))

    op.drop_table("notice_delivery")
    op.drop_table("notice_cycle")
    with op.batch_alter_table("rdap_contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rdap_contact_expires_at"))

    op.drop_table("rdap_contact")
    op.drop_table("notice_api_token")
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_state"))
        batch_op.drop_index(batch_op.f("ix_notice_hoster"))

    op.drop_table("notice")
    op.drop_table("attribution_snapshot")
