"""Retention: an index to find the lineage jobs that still serve an event.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Retention keeps an event while any job links to it: without this index
    # that question scans lineage_job_events once for every event.
    op.create_index("ix_lineage_job_events_event_pk", "lineage_job_events", ["event_pk"])


def downgrade() -> None:
    op.drop_index("ix_lineage_job_events_event_pk", "lineage_job_events")
