"""The dbt Cloud client's pure decisions: which answers are retried, how long, how runs read."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from dbt_tableau_relay.dbt_cloud import RunStep, parse_run, parse_time
from dbt_tableau_relay.dbt_cloud_errors import Backoff, error_for
from dbt_tableau_relay.errors import (
    DbtCloudError,
    PermanentDbtCloudError,
    RelayError,
    TransientDbtCloudError,
)


def envelope(code: int, message: str) -> bytes:
    status = {"code": code, "is_success": False, "user_message": message}
    return json.dumps({"status": status, "data": None}).encode()


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, TransientDbtCloudError),
        (408, TransientDbtCloudError),
        (500, TransientDbtCloudError),
        (502, TransientDbtCloudError),
        (503, TransientDbtCloudError),
        (504, TransientDbtCloudError),
        (400, PermanentDbtCloudError),
        (401, PermanentDbtCloudError),
        (403, PermanentDbtCloudError),
        (404, PermanentDbtCloudError),
        (405, PermanentDbtCloudError),
    ],
)
def test_which_answers_are_transient(status: int, kind: type[DbtCloudError]) -> None:
    error = error_for(status, b"", "GET runs/")
    assert type(error) is kind
    assert isinstance(error, RelayError)
    assert error.status == status


def test_the_error_keeps_dbts_user_message_and_not_the_body() -> None:
    body = envelope(401, "Invalid token.")[:-1] + b', "echo": "dbtc_leak"}'
    text = str(error_for(401, body, "GET runs/5/"))
    assert text.startswith("GET runs/5/: dbt Cloud answered 401 (Invalid token.)")
    assert "api_token" in text
    assert "dbtc_leak" not in text


def test_an_html_error_page_gives_the_status_alone() -> None:
    assert str(error_for(502, b"<html>Bad Gateway</html>", "GET runs/")) == (
        "GET runs/: dbt Cloud answered 502"
    )


@pytest.mark.parametrize(
    ("header", "seconds"), [("7", 7.0), ("0.5", 0.5), (None, None), ("soon", None)]
)
def test_retry_after_is_read_from_429s(header: str | None, seconds: float | None) -> None:
    assert error_for(429, b"", "GET runs/", header).retry_after == seconds


BACKOFF = Backoff(max_attempts=4, base_delay=1.0, max_delay=10.0)


@pytest.mark.parametrize(
    ("error", "attempt", "retried"),
    [
        (TransientDbtCloudError("503", status=503), 1, True),
        (TransientDbtCloudError("503", status=503), 3, True),
        (TransientDbtCloudError("503", status=503), 4, False),
        (PermanentDbtCloudError("401", status=401), 1, False),
        (TransientDbtCloudError("429", status=429, retry_after=10.0), 1, True),
        (TransientDbtCloudError("429", status=429, retry_after=10.5), 1, False),
    ],
)
def test_what_is_retried(error: DbtCloudError, attempt: int, retried: bool) -> None:
    assert (BACKOFF.delay(error, attempt) is not None) is retried


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (5, 10.0)])
def test_backoff_is_full_jitter_under_a_doubling_ceiling(attempt: int, ceiling: float) -> None:
    rng = random.Random(3)
    backoff = Backoff(max_attempts=9, base_delay=1.0, max_delay=10.0)
    error = TransientDbtCloudError("503")
    delays = [backoff.delay(error, attempt, rng) or 0.0 for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.8


def test_backoff_never_waits_less_than_retry_after() -> None:
    error = TransientDbtCloudError("429", retry_after=3.0)
    assert all((BACKOFF.delay(error, 1) or 0) >= 3.0 for _ in range(50))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-11-26 16:48:41.431645+00:00", datetime(2021, 11, 26, 16, 48, 41, 431645, UTC)),
        ("2024-01-01T00:05:00Z", datetime(2024, 1, 1, 0, 5, tzinfo=UTC)),
        ("2024-01-01T00:05:00", datetime(2024, 1, 1, 0, 5, tzinfo=UTC)),
        (None, None),
        ("", None),
    ],
)
def test_times_as_dbt_writes_them(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_a_time_that_is_not_iso_is_a_permanent_error() -> None:
    with pytest.raises(PermanentDbtCloudError, match="not ISO 8601"):
        parse_time("yesterday")


RUN: dict[str, Any] = {
    "id": 34929305,
    "account_id": 1,
    "environment_id": 49819,
    "project_id": 7,
    "job_definition_id": 43167,
    "status": 10,
    "status_humanized": "Success",
    "is_complete": True,
    "finished_at": "2021-11-26 16:49:32.996703+00:00",
    "run_steps": [
        {"id": 2, "index": 2, "name": "Invoke dbt with `dbt docs generate`", "status": 10},
        {"id": 1, "index": 1, "name": "Invoke dbt with `dbt build`", "status": 20},
    ],
    "href": "https://cloud.getdbt.com/deploy/1/projects/7/runs/34929305/",
    "unknown_new_field": {"dbt adds": "fields"},
}


def test_a_run_reads_its_ids_status_and_steps_in_index_order() -> None:
    run = parse_run(RUN)
    assert (run.id, run.account_id, run.job_id, run.environment_id, run.project_id) == (
        34929305,
        1,
        43167,
        49819,
        7,
    )
    assert (run.status, run.is_complete, run.is_success) == (10, True, True)
    assert run.finished_at == datetime(2021, 11, 26, 16, 49, 32, 996703, UTC)
    assert run.steps == (
        RunStep(1, "Invoke dbt with `dbt build`", 20, 1),
        RunStep(2, "Invoke dbt with `dbt docs generate`", 10, 2),
    )


def test_a_run_without_steps_or_job_definition_id_uses_job_id() -> None:
    data = {**RUN, "run_steps": [], "job_definition_id": None, "job_id": 5}
    data.pop("is_complete")
    run = parse_run(data)
    assert (run.job_id, run.steps, run.is_complete) == (5, (), True)


@pytest.mark.parametrize("missing", ["id", "account_id", "status"])
def test_a_run_missing_a_field_is_a_permanent_error(missing: str) -> None:
    data = {k: v for k, v in RUN.items() if k != missing}
    with pytest.raises(PermanentDbtCloudError, match=missing):
        parse_run(data)
