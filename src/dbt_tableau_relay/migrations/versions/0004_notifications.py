"""Notifications: the outbox of messages about finished refresh jobs (notifications.py).

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

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("refresh_job_id", BigId, nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("channel_kind", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", Time, nullable=False),
        sa.Column("lease_until", Time, nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("sent_at", Time, nullable=True),
        sa.ForeignKeyConstraint(
            ["refresh_job_id"],
            ["refresh_jobs.id"],
            name="fk_notifications_refresh_job_id_refresh_jobs",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_state_not_before", "notifications", ["state", "not_before"])
    op.create_index("ix_notifications_refresh_job_id", "notifications", ["refresh_job_id"])


def downgrade() -> None:
    op.drop_table("notifications")
