"""Database errors as one line: the URL without its password, what went wrong, what to check."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from dbt_tableau_relay.store_errors import GENERAL_HINT, database_error, database_hint

PASSWORD = "Sup3r-S3cret-db"
URL = f"postgresql+psycopg://relay:{PASSWORD}@127.0.0.1:5432/relay"


@pytest.mark.parametrize(
    ("driver_said", "check"),
    [
        ('FATAL:  password authentication failed for user "relay"', "user name and password"),
        ('FATAL:  role "relay" does not exist', "the user name"),
        ('FATAL:  database "relay" does not exist', "the database name"),
        ("Connection refused\n\tIs the server running on that host", "the host and port"),
        ("timeout expired", "no firewall"),
        ("failed to resolve host 'db': [Errno -2] Name or service not known", "the host name"),
        ('no pg_hba.conf entry for host "10.0.0.5", user "relay"', "pg_hba.conf"),
        ("unable to open database file", "folder exists"),
        ("Can't locate revision identified by '0099'", "newer than this relay"),
    ],
)
def test_what_to_check_follows_what_the_driver_said(driver_said: str, check: str) -> None:
    hint = database_hint(driver_said)
    assert hint.startswith("check database_url: ")
    assert check in hint


def test_an_unknown_problem_gets_the_general_hint() -> None:
    assert database_hint("SSL SYSCALL error: EOF detected") == GENERAL_HINT


def test_the_error_is_one_line_naming_the_url_without_its_password() -> None:
    driver = Exception(
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
        'FATAL:  role "relay" does not exist\n'
    )
    error = database_error(URL, OperationalError("SELECT 1", {}, driver))
    message = str(error)
    assert message == (
        "database postgresql+psycopg://relay:***@127.0.0.1:5432/relay:"
        ' role "relay" does not exist; check database_url: the user name'
    )


def test_a_password_the_driver_repeats_is_hidden_too() -> None:
    driver = Exception(f"weird driver: bad value {PASSWORD}\nsecond line")
    message = str(database_error(URL, OperationalError("SELECT 1", {}, driver)))
    assert PASSWORD not in message
    assert "\n" not in message
