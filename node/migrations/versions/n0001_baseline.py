"""baseline: the node schema of the first release

Revision ID: n0001
Revises: (none)
Create Date: 2026-11-24

Databases made before migrations existed (by ``create_all``) have exactly this schema;
``node.migrate.upgrade`` stamps them at this revision and carries on from here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n0001"
down_revision = None
branch_labels = None
depends_on = None

# The audit log is append-only in the database itself (node/audit.py explains why).
_AUDIT_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
    ],
}


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_at"), ["at"], unique=False)

    op.create_table(
        "crawl_cycle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("pages_fetched", sa.Integer(), nullable=False),
        sa.Column("pages_failed", sa.Integer(), nullable=False),
        sa.Column("images_found", sa.Integer(), nullable=False),
        sa.Column("images_hashed", sa.Integer(), nullable=False),
        sa.Column("analysis_failures", sa.Integer(), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("hosts_seen", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("crawl_cycle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crawl_cycle_report_id"), ["report_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_crawl_cycle_started_at"), ["started_at"], unique=False)

    op.create_table(
        "list_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("family_counts", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("removed_at", sa.DateTime(), nullable=True),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("list_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_list_version_source"), ["source"], unique=False)

    op.create_table(
        "node_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("next_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("period_end", sa.DateTime(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("rejected_code", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id"),
        sa.UniqueConstraint("sequence"),
    )
    op.create_table(
        "analysis_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("code", sa.String(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("failed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["crawl_cycle.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("analysis_failure", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analysis_failure_cycle_id"), ["cycle_id"], unique=False
        )

    op.create_table(
        "cycle_image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["crawl_cycle.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cycle_id", "url", name="uq_cycle_image_cycle_url"),
    )
    with op.batch_alter_table("cycle_image", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cycle_image_cycle_id"), ["cycle_id"], unique=False)

    op.create_table(
        "cycle_run",
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["crawl_cycle.id"],
        ),
        sa.PrimaryKeyConstraint("cycle_id"),
    )
    with op.batch_alter_table("cycle_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cycle_run_run_key"), ["run_key"], unique=False)

    op.create_table(
        "host_pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pages_fetched", sa.Integer(), nullable=False),
        sa.Column("pages_failed", sa.Integer(), nullable=False),
        sa.Column("images_found", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["crawl_cycle.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cycle_id", "host", name="uq_host_pages_cycle_host"),
    )
    with op.batch_alter_table("host_pages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_host_pages_cycle_id"), ["cycle_id"], unique=False)

    op.create_table(
        "list_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("list_version_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(), nullable=True),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_version_id"],
            ["list_version.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("family", "value", name="uq_list_entry_family_value"),
    )
    with op.batch_alter_table("list_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_list_entry_family"), ["family"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_list_entry_list_version_id"), ["list_version_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_list_entry_retired"), ["retired"], unique=False)

    op.create_table(
        "analysed_image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=False),
        sa.Column("server_ip", sa.String(), nullable=True),
        sa.Column("analysed_at", sa.DateTime(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("distance", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["crawl_cycle.id"],
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["list_entry.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("analysed_image", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analysed_image_cycle_id"), ["cycle_id"], unique=False)

    op.create_table(
        "sighting",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=False),
        sa.Column("server_ip", sa.String(), nullable=True),
        sa.Column("country", sa.String(), nullable=False),
        sa.Column("asn", sa.Integer(), nullable=False),
        sa.Column("hoster", sa.String(), nullable=False),
        sa.Column("family", sa.String(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["crawl_cycle.id"],
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["list_entry.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cycle_id", "url", name="uq_sighting_cycle_url"),
    )
    with op.batch_alter_table("sighting", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sighting_cycle_id"), ["cycle_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sighting_seen_at"), ["seen_at"], unique=False)

    for statement in _AUDIT_TRIGGERS.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_event_append_only() CASCADE")
    with op.batch_alter_table("sighting", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sighting_seen_at"))
        batch_op.drop_index(batch_op.f("ix_sighting_cycle_id"))

    op.drop_table("sighting")
    with op.batch_alter_table("analysed_image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysed_image_cycle_id"))

    op.drop_table("analysed_image")
    with op.batch_alter_table("list_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_list_entry_retired"))
        batch_op.drop_index(batch_op.f("ix_list_entry_list_version_id"))
        batch_op.drop_index(batch_op.f("ix_list_entry_family"))

    op.drop_table("list_entry")
    with op.batch_alter_table("host_pages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_host_pages_cycle_id"))

    op.drop_table("host_pages")
    with op.batch_alter_table("cycle_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cycle_run_run_key"))

    op.drop_table("cycle_run")
    with op.batch_alter_table("cycle_image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cycle_image_cycle_id"))

    op.drop_table("cycle_image")
    with op.batch_alter_table("analysis_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_failure_cycle_id"))

    op.drop_table("analysis_failure")
    op.drop_table("outbox")
    op.drop_table("node_state")
    with op.batch_alter_table("list_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_list_version_source"))

    op.drop_table("list_version")
    with op.batch_alter_table("crawl_cycle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crawl_cycle_started_at"))
        batch_op.drop_index(batch_op.f("ix_crawl_cycle_report_id"))

    op.drop_table("crawl_cycle")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_at"))
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))

    op.drop_table("audit_event")
