"""Which Tableau answers are worth retrying: the pure classification."""

from datetime import UTC, datetime

import pytest
import requests

from dbt_tableau_relay.errors import (
    AlreadyQueuedError,
    NotFoundError,
    PermanentTableauError,
    SessionInvalidError,
    TransientTableauError,
)
from dbt_tableau_relay.tableau_errors import classify, parse_retry_after, translate


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (409, "409093", AlreadyQueuedError),
        (409, "409090", PermanentTableauError),
        (401, "401000", SessionInvalidError),
        (401, "401002", SessionInvalidError),
        (401, "401001", PermanentTableauError),
        (400, "400006", PermanentTableauError),
        (403, "403004", PermanentTableauError),
        (404, "404006", NotFoundError),
        (404, "404011", NotFoundError),
        (429, None, TransientTableauError),
        (500, None, TransientTableauError),
        (502, None, TransientTableauError),
        (503, "503001", TransientTableauError),
        (408, None, TransientTableauError),
        (None, "409093", AlreadyQueuedError),
        (None, "404006", NotFoundError),
        (None, "500000", TransientTableauError),
        (None, None, TransientTableauError),
    ],
)
def test_classify(status: int | None, code: str | None, expected: type) -> None:
    assert type(classify(status, code)) is expected


def test_session_invalid_is_transient() -> None:
    """A superseded session is retried after a new sign-in, never failed for good."""
    assert isinstance(classify(401, "401002"), TransientTableauError)


def test_classify_keeps_code_message_and_retry_after() -> None:
    error = classify(429, None, "Too Many Requests", "", retry_after=7.0)
    assert error.status == 429
    assert error.retry_after == 7.0
    assert "Too Many Requests" in str(error)


def test_status_is_read_from_the_code_when_missing() -> None:
    assert classify(None, "409090", "Bad request", "Not allowed").status == 409


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0


@pytest.mark.parametrize(
    "exc",
    [requests.ConnectionError("refused"), requests.ReadTimeout("slow"), requests.ConnectTimeout()],
)
def test_network_errors_are_transient(exc: Exception) -> None:
    assert isinstance(translate(exc), TransientTableauError)


def test_programming_errors_are_not_swallowed() -> None:
    with pytest.raises(KeyError):
        translate(KeyError("bug"))
