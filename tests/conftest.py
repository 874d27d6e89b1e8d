"""Fixtures shared by every test layer: a PostgreSQL schema of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a fresh, empty schema, dropped afterwards.

    Skips when PostgreSQL is unreachable, unless RELAY_REQUIRE_POSTGRES=1 (CI),
    where that is a failure.
    """
    url = make_url(os.environ.get("RELAY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin = psycopg.connect(libpq, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("RELAY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (RELAY_REQUIRE_POSTGRES=1): {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    schema = f"relay_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            options = {"options": f"-csearch_path={schema}"}
            yield url.update_query_dict(options).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL of a schema of this test's own."""
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A PostgreSQL URL of a schema shared by one test module."""
    with postgres_schema() as url:
        yield url
