"""Runs: lineage jobs, per-run refresh dedupe, relay state, cluster leases; explanations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("refresh_jobs") as batch:
        batch.add_column(sa.Column("explanation", sa.Text(), nullable=True))
    op.create_index("ix_events_run_id", "events", ["run_id"])
    _lineage_jobs()
    op.create_table(
        "run_refreshes",
        sa.Column("run_key", sa.String(140), nullable=False),
        sa.Column("target_key", sa.String(600), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("run_key", "target_key", name="pk_run_refreshes"),
    )
    op.create_table(
        "relay_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_relay_state"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("until", Time, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def _lineage_jobs() -> None:
    op.create_table(
        "lineage_jobs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("dbt_job_id", sa.String(64), nullable=True),
        sa.Column("rule_name", sa.String(255), nullable=False),
        sa.Column("sources", sa.String(64), nullable=False),
        sa.Column("wait", sa.Boolean(), nullable=False),
        sa.Column("incremental", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", Time, nullable=False),
        sa.Column("lease_until", Time, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("explanation", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("finished_at", Time, nullable=True),
        sa.Column("last_event_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_jobs"),
        sa.UniqueConstraint("run_id", "rule_name", name="uq_lineage_jobs_run_id_rule_name"),
    )
    op.create_index("ix_lineage_jobs_state", "lineage_jobs", ["state"])
    op.create_table(
        "lineage_job_events",
        sa.Column("lineage_job_id", BigId, nullable=False),
        sa.Column("event_pk", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["lineage_job_id"],
            ["lineage_jobs.id"],
            name="fk_lineage_job_events_lineage_job_id_lineage_jobs",
        ),
        sa.ForeignKeyConstraint(
            ["event_pk"], ["events.id"], name="fk_lineage_job_events_event_pk_events"
        ),
        sa.PrimaryKeyConstraint("lineage_job_id", "event_pk", name="pk_lineage_job_events"),
    )


def downgrade() -> None:
    for table in ("lineage_job_events", "lineage_jobs", "leases", "relay_state", "run_refreshes"):
        op.drop_table(table)
    op.drop_index("ix_events_run_id", "events")
    with op.batch_alter_table("refresh_jobs") as batch:
        batch.drop_column("explanation")
