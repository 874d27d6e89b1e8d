"""Database errors, translated at the boundary: one line naming the URL (password hidden)
and what to check, instead of SQLAlchemy's traceback.

`translated(url)` wraps the calls that connect first (migrate at start-up, the
readiness ping); `database_hint` is the pure decision of what to tell the user,
from what the driver said. libpq's and SQLite's messages are matched in
English, the language the server speaks unless `lc_messages` says otherwise;
anything else gets the general hint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from dbt_tableau_relay.config import hide_password
from dbt_tableau_relay.errors import DatabaseError

_CHECK_URL: Final = "check database_url"
HINTS: Final = (
    (r"password authentication failed|no password supplied", "the user name and password"),
    (r'role ".*" does not exist', "the user name"),
    (r'database ".*" does not exist', "the database name, or create that database"),
    (
        r"connection refused",
        "the host and port, and that PostgreSQL runs and accepts TCP/IP connections there",
    ),
    (r"timeout expired|timed out", "the host and port, and that no firewall drops the connection"),
    (r"resolve host|translate host name|name or service not known", "the host name"),
    (r"no pg_hba\.conf entry", "that PostgreSQL's pg_hba.conf lets this user in from this host"),
    (r"unable to open database file", "that the file's folder exists and the relay may write"),
    (r"can't locate revision", "the relay's version: the schema is newer than this relay knows"),
)
# libpq's preamble, which repeats the URL's host and port: the message names the URL anyway.
_PREAMBLE: Final = re.compile(
    r"^(?:connection failed: )?(?:connection to server at [^,]*, port \d+ failed: )?(?:FATAL: +)?"
)
GENERAL_HINT: Final = f"{_CHECK_URL} and that the database accepts the relay's connections"


def database_hint(detail: str) -> str:
    """What to check, given the driver's message."""
    for pattern, what in HINTS:
        if re.search(pattern, detail, re.IGNORECASE):
            return f"{_CHECK_URL}: {what}"
    return GENERAL_HINT


def database_error(url: str, error: BaseException) -> DatabaseError:
    """One line: the URL without its password, what the driver said, what to check."""
    detail = _one_line(str(getattr(error, "orig", None) or error))
    password = _password(url)
    if password:  # no driver says it, but a message must never be the way it leaks
        detail = detail.replace(password, "***")
    hint = database_hint(detail)
    return DatabaseError(f"database {hide_password(url)}: {detail.rstrip('.')}; {hint}")


@contextmanager
def translated(url: str) -> Iterator[None]:
    """Driver and migration errors inside the block become one `DatabaseError`."""
    try:
        yield
    except (DBAPIError, CommandError) as exc:
        raise database_error(url, exc) from exc


def _one_line(message: str) -> str:
    lines = [" ".join(line.split()) for line in message.splitlines()]
    return _PREAMBLE.sub("", ". ".join(line.rstrip(".") for line in lines if line))


def _password(url: str) -> str | None:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    query_password = parsed.query.get("password")
    return parsed.password or (query_password if isinstance(query_password, str) else None)
