"""A failed or dead job remembers the job its replay handed its events to.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a foreign key to an existing table otherwise.
    with op.batch_alter_table("refresh_jobs") as batch:
        batch.add_column(
            sa.Column("replayed_as", sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
        )
        batch.create_foreign_key(
            "fk_refresh_jobs_replayed_as_refresh_jobs", "refresh_jobs", ["replayed_as"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("refresh_jobs") as batch:
        batch.drop_constraint("fk_refresh_jobs_replayed_as_refresh_jobs", type_="foreignkey")
        batch.drop_column("replayed_as")
