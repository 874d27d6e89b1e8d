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
from dbt_tableau_relay.events import DbtEvent, parse_event

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


# -- hostile input: encodings, numbers, nesting, and the parser's invariants ----------

SAMPLE = (FIXTURES / "job.run.completed.json").read_bytes()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-32-be"])
def test_an_event_in_another_unicode_encoding_is_refused_as_not_utf8(encoding: str) -> None:
    """json.loads would take these; the relay stores bodies as UTF-8 text, so it must not."""
    with pytest.raises(MalformedEventError, match="body is not JSON"):
        parse_event(SAMPLE.decode().encode(encoding))


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    assert parse_event(b"\xef\xbb\xbf" + SAMPLE).event_id == "wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD"


@pytest.mark.parametrize(
    "raw",
    [b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xff", b"\xe2\x82"],
    ids=["lone-surrogate", "overlong", "above-u10ffff", "invalid-byte", "truncated"],
)
def test_invalid_utf8_inside_a_string_is_refused_naming_its_position(raw: bytes) -> None:
    broken = SAMPLE.replace(b"Daily Job", b"Daily " + raw + b"Job")
    position = broken.index(raw)
    with pytest.raises(MalformedEventError, match=f"not UTF-8 .*position {position}"):
        parse_event(broken)


def test_an_escaped_lone_surrogate_in_an_id_is_refused() -> None:
    with pytest.raises(MalformedEventError, match=r"'data\.jobId' contains control or unpaired"):
        parse_event(SAMPLE.replace(b'"jobId": "123"', b'"jobId": "12\\ud800"'))


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-0.0", b"1e-400", b"0.0"]
)
def test_odd_number_literals_in_an_id_are_refused(literal: bytes) -> None:
    with pytest.raises(MalformedEventError, match="'accountId'"):
        parse_event(SAMPLE.replace(b'"accountId": 1', b'"accountId": ' + literal))


def test_odd_number_literals_in_unknown_fields_are_ignored() -> None:
    raw = SAMPLE.replace(b'"accountId": 1,', b'"accountId": 1, "x": [NaN, Infinity, 1e400, -0],')
    assert parse_event(raw).account_id == "1"


def _parse_or_reason(raw: bytes) -> DbtEvent | str:
    """The event, or the refusal's message: for properties where either is fine."""
    try:
        return parse_event(raw)
    except MalformedEventError as exc:
        return str(exc)


def _mutate(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(doc))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


_FIELDS = [
    *[(key,) for key in ("eventId", "eventType", "timestamp", "accountId", "webhookId", "data")],
    *[("data", key) for key in ("jobId", "runId", "runStatusCode", "runStartedAt", "jobName")],
]
_big_ints = st.integers(min_value=-(2**80), max_value=2**80) | st.sampled_from(
    [2**63 - 1, 2**63, -1, 0, 2**31 - 1, 2**31, 10**4000]
)
_any_value = st.none() | st.booleans() | _big_ints | st.floats() | st.text(max_size=200)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_FIELDS), _any_value | st.lists(_any_value, max_size=3))
def test_one_field_replaced_by_anything_parses_or_is_refused_naming_that_field(
    path: tuple[str, ...], value: Any
) -> None:
    doc = _mutate(fixture("job.run.completed"), path, value)
    event = _parse_or_reason(body(doc))
    if isinstance(event, str):
        assert f"'{'.'.join(path)}'" in event
    else:
        assert event.run_id == ("12345" if path != ("data", "runId") else event.run_id)
        assert event.event_id.isprintable()
        assert event.timestamp.tzinfo == UTC


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=20_000), st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_in_an_unknown_field_is_parsed_or_refused_never_crashes(
    depth: int, opener: bytes
) -> None:
    closer = b"]" if opener == b"[" else b"}"
    nested = opener * depth + b"1" + closer * depth
    raw = SAMPLE.replace(b'"accountId": 1,', b'"accountId": 1, "deep": ' + nested + b",")
    event = _parse_or_reason(raw)
    if isinstance(event, str):
        assert "nested too deeply" in event
    else:
        assert event.account_id == "1"


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=6000), st.sampled_from(_FIELDS))
def test_huge_number_literals_anywhere_are_parsed_or_refused(
    digits: str, path: tuple[str, ...]
) -> None:
    marker = "__number__"
    doc = _mutate(fixture("job.run.completed"), path, marker)
    number = digits.lstrip("0") or "0"
    event = _parse_or_reason(json.dumps(doc).replace(f'"{marker}"', number).encode())
    if not isinstance(event, str) and path == ("accountId",):
        assert event.account_id == number


_ids = st.integers(min_value=0, max_value=2**63 - 1) | st.from_regex(
    r"[A-Za-z0-9_]{1,40}", fullmatch=True
)
_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def _dbt_events(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies in the shape dbt sends, with the variations it is known to use."""
    data = {
        "jobId": draw(_ids),
        "runId": draw(_ids),
        "environmentId": draw(_ids),
        "projectId": draw(_ids),
        "runStatusCode": draw(st.sampled_from([3, 10, 20, 30, "10", " 20 "])),
        "runStartedAt": draw(_times).isoformat(),
        "jobName": draw(st.text(max_size=50)),
    }
    return {
        "eventId": draw(st.from_regex(r"wev_[A-Za-z0-9]{1,27}", fullmatch=True)),
        "eventType": draw(st.sampled_from(["job.run.started", "job.run.completed"])),
        "timestamp": draw(_times).isoformat().replace("+00:00", "Z"),
        "accountId": draw(_ids),
        draw(st.sampled_from(["webhookId", "webhooksID"])): draw(_ids),
        "data": data,
    }


@settings(max_examples=150, deadline=None)
@given(_dbt_events())
def test_every_dbt_shaped_event_parses_with_its_ids_as_strings(doc: dict[str, Any]) -> None:
    event = parse_event(body(doc))
    data = doc["data"]
    assert event.event_id == doc["eventId"]
    assert event.account_id == str(doc["accountId"])
    assert event.webhook_id == str(doc.get("webhookId", doc.get("webhooksID")))
    assert (event.job_id, event.run_id) == (str(data["jobId"]), str(data["runId"]))
    assert event.run_status_code == int(data["runStatusCode"])
    assert event.timestamp == datetime.fromisoformat(doc["timestamp"])


@settings(max_examples=100, deadline=None)
@given(
    _dbt_events(),
    st.sampled_from([None, 0, 2, "\t"]),
    st.booleans(),
    st.booleans(),
)
def test_formatting_of_the_same_document_does_not_change_the_event(
    doc: dict[str, Any], indent: int | str | None, ensure_ascii: bool, sort_keys: bool
) -> None:
    """Whitespace, key order and \\u escapes are JSON spelling, not content."""
    spelled = json.dumps(doc, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    assert parse_event(spelled.encode()) == parse_event(body(doc))


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=8), st.integers(min_value=0, max_value=len(SAMPLE)))
def test_bytes_spliced_into_a_valid_body_parse_or_are_refused(junk: bytes, at: int) -> None:
    with contextlib.suppress(MalformedEventError):
        parse_event(SAMPLE[:at] + junk + SAMPLE[at:])
