"""dbt Cloud webhook bodies, parsed leniently into one frozen `DbtEvent`.

Lenient where dbt varies (ids as strings or integers, `webhookId` or the older
`webhooksID`, nine fractional digits, fields added over time), strict where a
wrong value would mislead a decision or reach the database: the event id and
type, ids that are not short printable text, numbers out of range. Whatever
the bytes, `parse_event` returns a `DbtEvent` or raises `MalformedEventError`
naming the field, and nothing else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from dbt_tableau_relay.errors import MalformedEventError

EventType = Literal["job.run.started", "job.run.completed", "job.run.errored"]
EVENT_TYPES: Final[tuple[EventType, ...]] = (
    "job.run.started",
    "job.run.completed",
    "job.run.errored",
)

# runStatusCode values (dbt Admin API); decisions key on the code, not the text.
STATUS_SUCCESS: Final = 10
STATUS_ERROR: Final = 20
STATUS_CANCELLED: Final = 30

MAX_EVENT_ID_LENGTH: Final = 128  # the width of events.event_id
MAX_ID_LENGTH: Final = 64  # the width of the other id columns
MAX_TEXT_LENGTH: Final = 4096
_MAX_ID_INT: Final = 2**63 - 1  # a BIGINT: anything larger is not a dbt id
_MAX_STATUS_CODE: Final = 2**31 - 1  # an INTEGER column
_DIGITS = re.compile(r"\d{1,10}")


@dataclass(frozen=True, slots=True)
class DbtEvent:
    """One dbt Cloud webhook delivery; every id is a string."""

    event_id: str
    event_type: EventType
    timestamp: datetime
    account_id: str | None = None
    webhook_id: str | None = None
    webhook_name: str | None = None
    job_id: str | None = None
    job_name: str | None = None
    run_id: str | None = None
    environment_id: str | None = None
    environment_name: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    run_status_code: int | None = None
    run_status: str | None = None
    run_reason: str | None = None
    dbt_version: str | None = None
    run_started_at: datetime | None = None
    run_finished_at: datetime | None = None  # runFinishedAt, or runErroredAt

    @property
    def status(self) -> Literal["success", "error", "cancelled"] | None:
        """The run's verdict from `runStatusCode`, or None while it runs."""
        if self.run_status_code is None:
            return None
        return _STATUSES.get(self.run_status_code)


_STATUSES: Final[dict[int, Literal["success", "error", "cancelled"]]] = {
    STATUS_SUCCESS: "success",
    STATUS_ERROR: "error",
    STATUS_CANCELLED: "cancelled",
}


# Ids are printable text; the parser takes any printable Unicode, the schema says ASCII.
_PRINTABLE: Final = "^[ -~]*$"
# The range is told, not declared: with a `minimum`, generators (schemathesis) write
# integers as 5.0, which JSON Schema calls an integer and the parser refuses; and a
# `maximum` of 2**63 - 1 would be rendered as the float 2.0**63.
_BIGINT_SCHEMA: Final = {
    "type": "integer",
    "description": "0 to 2**63 - 1, written without a fraction or exponent",
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_ID_SCHEMA: Final = _nullable(
    {
        "anyOf": [
            {"type": "string", "maxLength": MAX_ID_LENGTH, "pattern": _PRINTABLE},
            _BIGINT_SCHEMA,
        ]
    }
)
_TEXT_SCHEMA: Final = _nullable({"type": "string"})
_TIME_SCHEMA: Final = _nullable({"type": "string", "format": "date-time"})

# What `parse_event` accepts, as JSON Schema: the request body in the OpenAPI
# description. Documentation, not the check: the parser is the check.
EVENT_SCHEMA: Final[dict[str, Any]] = {
    "title": "DbtCloudEvent",
    "description": "A dbt Cloud job webhook. Unknown fields are ignored.",
    "type": "object",
    "required": ["eventId", "eventType", "timestamp", "data"],
    "properties": {
        "eventId": {
            "type": "string",
            "maxLength": MAX_EVENT_ID_LENGTH,
            "pattern": "^[ -~]*[!-~][ -~]*$",
            "description": "dbt sends a string such as wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD;"
            " an integer is accepted too",
        },
        "eventType": {"enum": list(EVENT_TYPES)},
        "timestamp": {"type": "string", "format": "date-time"},
        "accountId": _ID_SCHEMA,
        "webhookId": _ID_SCHEMA,
        "webhooksID": _ID_SCHEMA,
        "webhookName": _TEXT_SCHEMA,
        "data": {
            "type": "object",
            "properties": {
                **dict.fromkeys(["jobId", "runId", "environmentId", "projectId"], _ID_SCHEMA),
                **dict.fromkeys(
                    ["jobName", "environmentName", "projectName", "runStatus", "runReason"],
                    _TEXT_SCHEMA,
                ),
                "dbtVersion": _TEXT_SCHEMA,
                "runStatusCode": _nullable(
                    {
                        "anyOf": [
                            {"type": "integer", "minimum": 0, "maximum": _MAX_STATUS_CODE},
                            {"type": "string", "pattern": r"^\s*\d{1,9}\s*$"},
                        ]
                    }
                ),
                **dict.fromkeys(["runStartedAt", "runFinishedAt", "runErroredAt"], _TIME_SCHEMA),
            },
        },
    },
}


def parse_event(body: bytes | str) -> DbtEvent:
    """Parse a webhook body; raise MalformedEventError if it is not a dbt event."""
    root = _load_object(body)
    event_id, event_type = _event_id(root), _event_type(root)
    if "data" not in root:
        raise MalformedEventError("missing field 'data'")
    data = root["data"]
    if not isinstance(data, dict):
        raise MalformedEventError(f"field 'data' must be an object, got {_kind(data)}")
    return DbtEvent(
        event_id=event_id,
        event_type=event_type,
        timestamp=_required_time(root, "timestamp"),
        account_id=_id(root, "accountId"),
        webhook_id=_id(root, "webhookId") or _id(root, "webhooksID"),
        webhook_name=_text(root, "webhookName"),
        job_id=_id(data, "jobId", "data."),
        job_name=_text(data, "jobName", "data."),
        run_id=_id(data, "runId", "data."),
        environment_id=_id(data, "environmentId", "data."),
        environment_name=_text(data, "environmentName", "data."),
        project_id=_id(data, "projectId", "data."),
        project_name=_text(data, "projectName", "data."),
        run_status_code=_status_code(data),
        run_status=_text(data, "runStatus", "data."),
        run_reason=_text(data, "runReason", "data."),
        dbt_version=_text(data, "dbtVersion", "data."),
        run_started_at=_time(data, "runStartedAt", "data."),
        run_finished_at=_time(data, "runFinishedAt", "data.")
        or _time(data, "runErroredAt", "data."),
    )


def _load_object(body: bytes | str) -> dict[str, Any]:
    if isinstance(body, bytes | bytearray):
        body = _utf8(body)
    try:
        root = json.loads(body)
    except RecursionError:
        raise MalformedEventError("body is nested too deeply to be a dbt event") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise MalformedEventError(f"body is not JSON: {_short(str(exc))}") from None
    except TypeError:
        raise MalformedEventError("body is not JSON") from None
    if not isinstance(root, dict):
        raise MalformedEventError(f"body must be a JSON object, got {_kind(root)}")
    return root


def _utf8(body: bytes | bytearray) -> str:
    """JSON between systems is UTF-8 (RFC 8259), which dbt sends, and the relay stores as text.

    `json.loads` would also take UTF-16 and UTF-32 bytes, and lone surrogates:
    such a body would parse, then be stored as unreadable text.
    """
    try:
        return body.decode("utf-8-sig")  # a byte order mark is harmless: ignore it
    except UnicodeDecodeError as exc:
        raise MalformedEventError(
            f"body is not JSON: not UTF-8 (invalid byte at position {exc.start})"
        ) from None


def _event_id(root: Mapping[str, Any]) -> str:
    if "eventId" not in root:
        raise MalformedEventError("missing field 'eventId'")
    value = _id(root, "eventId", limit=MAX_EVENT_ID_LENGTH)
    if value is None:
        raise MalformedEventError("field 'eventId' must not be empty")
    return value


def _event_type(root: Mapping[str, Any]) -> EventType:
    if "eventType" not in root:
        raise MalformedEventError("missing field 'eventType'")
    value = root["eventType"]
    for known in EVENT_TYPES:
        if value == known:
            return known
    expected = ", ".join(EVENT_TYPES)
    raise MalformedEventError(
        f"field 'eventType' must be one of {expected}, got {_short(repr(value))}"
    )


def _id(
    obj: Mapping[str, Any], key: str, prefix: str = "", limit: int = MAX_ID_LENGTH
) -> str | None:
    """An id given as a string or an integer, stored as a string; "" and null are None."""
    value = obj.get(key)
    name = prefix + key
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= _MAX_ID_INT:
            raise MalformedEventError(f"field {name!r} is out of range")
        return str(value)
    if not isinstance(value, str):
        raise MalformedEventError(
            f"field {name!r} must be a string or an integer, got {_kind(value)}"
        )
    value = value.strip()
    if len(value) > limit:
        raise MalformedEventError(f"field {name!r} is longer than {limit} characters")
    if not value.isprintable():
        raise MalformedEventError(f"field {name!r} contains control or unpaired characters")
    return value or None


def _text(obj: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEventError(f"field {prefix + key!r} must be a string, got {_kind(value)}")
    # Names are shown, never stored in a column: keep them, bounded.
    return value[:MAX_TEXT_LENGTH]


def _status_code(data: Mapping[str, Any]) -> int | None:
    value = data.get("runStatusCode")
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedEventError(
            f"field 'data.runStatusCode' must be an integer, got {_kind(value)}"
        )
    if not 0 <= value <= _MAX_STATUS_CODE:
        raise MalformedEventError("field 'data.runStatusCode' is out of range")
    return value


def _required_time(obj: Mapping[str, Any], key: str) -> datetime:
    value = _time(obj, key)
    if value is None:
        raise MalformedEventError(f"missing field {key!r}")
    return value


def _time(obj: Mapping[str, Any], key: str, prefix: str = "") -> datetime | None:
    """An ISO 8601 time; naive times are taken as UTC, every result is UTC."""
    value = obj.get(key)
    name = prefix + key
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEventError(f"field {name!r} must be an ISO 8601 time, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MalformedEventError(
            f"field {name!r} is not an ISO 8601 time: {_short(repr(value))}"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC equivalent
        raise MalformedEventError(f"field {name!r} is out of range") from None


def _kind(value: object) -> str:
    """A JSON type name for messages: 'an array', 'a number'..."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
