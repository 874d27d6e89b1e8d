"""Alembic environment: always run programmatically by `store.migrate(engine)`.

The caller passes an open connection in `config.attributes["connection"]`, so
there is no alembic.ini, no URL here and no logging set-up.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from dbt_tableau_relay import notifications, runs  # noqa: F401 - their tables join Base.metadata
from dbt_tableau_relay.store import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through dbt_tableau_relay.store.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
