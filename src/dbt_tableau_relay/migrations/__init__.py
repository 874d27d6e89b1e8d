"""Alembic migrations of the store's schema, run by `store.migrate()` at start-up."""
