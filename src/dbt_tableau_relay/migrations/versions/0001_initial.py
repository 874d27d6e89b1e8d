"""The first schema: events, refresh jobs, their links and attempts.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)
QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    _events()
    _refresh_jobs()
    _refresh_job_events()
    _attempts()


def _events() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.Column("event_type", sa.String(64), nullable=True),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("environment_id", sa.String(64), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("run_status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", Time, nullable=False),
        sa.Column("refreshes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )


def _refresh_jobs() -> None:
    op.create_table(
        "refresh_jobs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target_by", sa.String(8), nullable=False),
        sa.Column("target_ref", sa.String(512), nullable=False),
        sa.Column("target_key", sa.String(600), nullable=False),
        sa.Column("rule_name", sa.String(255), nullable=False),
        sa.Column("incremental", sa.Boolean(), nullable=False),
        sa.Column("wait", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("not_before", Time, nullable=False),
        sa.Column("lease_until", Time, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("item_luid", sa.String(64), nullable=True),
        sa.Column("tableau_job_id", sa.String(64), nullable=True),
        sa.Column("sent_at", Time, nullable=True),
        sa.Column("finished_at", Time, nullable=True),
        sa.Column("finish_code", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("last_event_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_refresh_jobs"),
    )
    op.create_index(
        "uq_refresh_jobs_queued_target",
        "refresh_jobs",
        ["target_key"],
        unique=True,
        sqlite_where=QUEUED,
        postgresql_where=QUEUED,
    )
    op.create_index("ix_refresh_jobs_state_not_before", "refresh_jobs", ["state", "not_before"])


def _refresh_job_events() -> None:
    op.create_table(
        "refresh_job_events",
        sa.Column("refresh_job_id", BigId, nullable=False),
        sa.Column("event_pk", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["refresh_job_id"],
            ["refresh_jobs.id"],
            name="fk_refresh_job_events_refresh_job_id_refresh_jobs",
        ),
        sa.ForeignKeyConstraint(
            ["event_pk"], ["events.id"], name="fk_refresh_job_events_event_pk_events"
        ),
        sa.PrimaryKeyConstraint("refresh_job_id", "event_pk", name="pk_refresh_job_events"),
    )
    op.create_index("ix_refresh_job_events_event_pk", "refresh_job_events", ["event_pk"])


def _attempts() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("refresh_job_id", BigId, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", Time, nullable=False),
        sa.Column("finished_at", Time, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("tableau_job_id", sa.String(64), nullable=True),
        sa.Column("finish_code", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(16), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["refresh_job_id"], ["refresh_jobs.id"], name="fk_attempts_refresh_job_id_refresh_jobs"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
    )
    op.create_index("ix_attempts_refresh_job_id", "attempts", ["refresh_job_id"])


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("refresh_job_events")
    op.drop_table("refresh_jobs")
    op.drop_table("events")
