"""Parsing dbt Cloud webhook bodies: lenient with dbt's variations, strict with non-events."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbt_tableau_relay.errors import MalformedEventError
from dbt_tableau_relay.events import parse_event

# dbt's documented sample bodies, kept with the tests so a fresh clone runs them.
FIXTURES = Path(__file__).parents[1] / "fixtures" / "dbt-cloud"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return data


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        ("job.run.started", 3, None),
        ("job.run.completed", 10, "success"),
        ("job.run.errored", 20, "error"),
    ],
)
def test_every_documented_sample_parses(name: str, code: int, status: str | None) -> None:
    """The exact pretty-printed bytes of dbt's samples parse, ids as strings."""
    event = parse_event((FIXTURES / f"{name}.json").read_bytes())
    assert event.event_type == name
    assert event.run_status_code == code
    assert event.status == status
    assert (event.account_id, event.job_id, event.run_id) == ("1", "123", "12345")
    assert (event.environment_id, event.project_id) == ("1234", "167194")
    assert event.webhook_id == "wsu_12345abcde"
    assert event.project_name == "Snowflake Github Demo"


def test_completed_sample_fields() -> None:
    event = parse_event(body(fixture("job.run.completed")))
    assert event.event_id == "wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD"
    assert event.job_name == "Daily Job (dbt build)"
    assert event.environment_name == "Production"
    assert event.run_status == "Success"
    assert event.run_finished_at == datetime(2023, 1, 31, 19, 29, 32, tzinfo=UTC)


def test_errored_at_counts_as_finished() -> None:
    event = parse_event(body(fixture("job.run.errored")))
    assert event.run_finished_at == datetime(2023, 1, 31, 21, 15, 20, tzinfo=UTC)


def test_nine_digit_timestamp_is_aware_utc() -> None:
    event = parse_event(body(fixture("job.run.completed")))
    assert event.timestamp == datetime(2023, 1, 31, 19, 29, 35, 789265, tzinfo=UTC)


def test_offset_timestamp_is_converted_to_utc() -> None:
    doc = fixture("job.run.completed") | {"timestamp": "2023-01-31T20:29:35+01:00"}
    assert parse_event(body(doc)).timestamp == datetime(2023, 1, 31, 19, 29, 35, tzinfo=UTC)


def test_naive_timestamp_is_taken_as_utc() -> None:
    doc = fixture("job.run.completed") | {"timestamp": "2023-01-31T19:29:35"}
    assert parse_event(body(doc)).timestamp.tzinfo == UTC


def test_integer_ids_are_stored_as_strings() -> None:
    doc = fixture("job.run.completed")
    doc["accountId"] = 1
    doc["data"] |= {"jobId": 123, "runId": 12345, "environmentId": 1234, "projectId": 167194}
    event = parse_event(body(doc))
    assert (event.account_id, event.job_id, event.run_id) == ("1", "123", "12345")
    assert (event.environment_id, event.project_id) == ("1234", "167194")


def test_string_account_id_is_accepted() -> None:
    doc = fixture("job.run.completed") | {"accountId": "42"}
    assert parse_event(body(doc)).account_id == "42"


def test_old_webhooks_id_spelling_is_accepted() -> None:
    doc = fixture("job.run.completed")
    doc["webhooksID"] = doc.pop("webhookId")
    assert parse_event(body(doc)).webhook_id == "wsu_12345abcde"


def test_unknown_fields_are_ignored() -> None:
    doc = fixture("job.run.completed") | {"newTopLevel": {"a": [1, 2]}}
    doc["data"] |= {"newField": None, "runSteps": [{"x": 1}]}
    assert parse_event(body(doc)).event_id == "wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD"


@pytest.mark.parametrize("code", ["10", " 10 ", 10])
def test_run_status_code_as_int_or_numeric_string(code: object) -> None:
    doc = fixture("job.run.completed")
    doc["data"]["runStatusCode"] = code
    assert parse_event(body(doc)).run_status_code == 10


def test_missing_optional_fields_are_none() -> None:
    doc = {"eventId": "e1", "eventType": "job.run.completed", "timestamp": "2024-01-01T00:00Z"}
    event = parse_event(body(doc | {"data": {}}))
    assert (event.job_id, event.run_status_code, event.account_id) == (None, None, None)


def test_str_body_is_accepted() -> None:
    assert parse_event(json.dumps(fixture("job.run.started"))).event_type == "job.run.started"


def _with(path: str, value: Any) -> bytes:
    doc = fixture("job.run.completed")
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[part]
    target[last] = value
    return body(doc)


def _without(path: str) -> bytes:
    doc = fixture("job.run.completed")
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[part]
    del target[last]
    return body(doc)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "body is not JSON"),
        (b"not json", "body is not JSON"),
        (b"\xff\xfe\x00garbage", "body is not JSON"),
        (b"[1, 2]", "body must be a JSON object, got an array"),
        (b'"text"', "body must be a JSON object, got a string"),
        (b"null", "body must be a JSON object, got null"),
        (b"[" * 100_000, "nested too deeply"),
        (b"1" * 5000, "body is not JSON"),
        (_without("eventId"), "missing field 'eventId'"),
        (_without("eventType"), "missing field 'eventType'"),
        (_without("data"), "missing field 'data'"),
        (_without("timestamp"), "missing field 'timestamp'"),
        (_with("eventId", ""), "field 'eventId' must not be empty"),
        (_with("eventId", None), "field 'eventId' must not be empty"),
        (_with("eventId", ["x"]), "field 'eventId' must be a string or an integer, got an array"),
        (_with("eventId", "x" * 129), "field 'eventId' is longer than 128 characters"),
        (_with("eventId", "a\x00b"), "field 'eventId' contains control"),
        (_with("eventType", "job.run.cancelled"), "field 'eventType' must be one of"),
        (_with("eventType", 3), "field 'eventType' must be one of"),
        (_with("data", []), "field 'data' must be an object, got an array"),
        (_with("accountId", True), "field 'accountId' must be a string or an integer"),
        (_with("accountId", 1.5), "field 'accountId' must be a string or an integer, got a number"),
        (_with("accountId", 10**30), "field 'accountId' is out of range"),
        (_with("accountId", -1), "field 'accountId' is out of range"),
        (_with("data.jobId", {"id": 1}), "field 'data.jobId' must be a string or an integer"),
        (_with("data.runId", "1" * 65), "field 'data.runId' is longer than 64 characters"),
        (_with("data.runStatusCode", "ten"), "field 'data.runStatusCode' must be an integer"),
        (_with("data.runStatusCode", 10.0), "field 'data.runStatusCode' must be an integer"),
        (_with("data.runStatusCode", 2**40), "field 'data.runStatusCode' is out of range"),
        (_with("data.jobName", 5), "field 'data.jobName' must be a string, got a number"),
        (_with("timestamp", "yesterday"), "field 'timestamp' is not an ISO 8601 time"),
        (_with("timestamp", 1675193375), "field 'timestamp' must be an ISO 8601 time"),
        (_with("data.runStartedAt", "soon"), "field 'data.runStartedAt' is not an ISO 8601"),
    ],
)
def test_non_events_are_refused_naming_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedEventError, match=message.replace("(", r"\(")):
        parse_event(raw)


def test_huge_number_literal_in_an_unknown_field_is_refused_not_crashed() -> None:
    raw = body(fixture("job.run.completed"))[:-1] + b', "x": ' + b"9" * 5000 + b"}"
    with pytest.raises(MalformedEventError, match="not JSON"):
        parse_event(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_parse_or_raise_malformed_only(raw: bytes) -> None:
    with contextlib.suppress(MalformedEventError):
        parse_event(raw)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_value = _json | st.sampled_from(["job.run.completed", "2024-01-01T00:00:00Z", "10", ""])
_keys = ["eventId", "eventType", "timestamp", "accountId", "webhookId", "webhooksID", "data"]
_data_keys = ["jobId", "runId", "environmentId", "projectId", "runStatusCode", "jobName"]
_eventish = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(_keys, _value),
        "data": st.fixed_dictionaries({}, optional=dict.fromkeys(_data_keys, _value)) | _json,
    },
)


@settings(max_examples=200, deadline=None)
@given(_json | _eventish)
def test_arbitrary_json_parses_or_raises_malformed_only(doc: Any) -> None:
    try:
        event = parse_event(json.dumps(doc).encode())
    except MalformedEventError as exc:
        message = str(exc)
        assert message
    else:
        assert event.timestamp.tzinfo == UTC
        assert isinstance(event.event_id, str)
        assert event.event_id.isprintable()
