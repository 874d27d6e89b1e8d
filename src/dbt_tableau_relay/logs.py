"""Logging, configured once by the CLI: an event name plus fields.

Code logs `log.info("refresh.queued", extra={"job_id": 3, "target": ...})`;
this module renders that as `refresh.queued job_id=3 target=...` or, with
`--log-format json`, as one JSON object a line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else came in through `extra`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = " ".join(f"{k}={_text(v)}" for k, v in fields_of(record).items())
        line = f"{when} {record.levelname:<7} {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
            **fields_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class Throttle:
    """At most one line per `interval` seconds of an event anyone can cause (a 401 from a
    stranger), so that a flood cannot fill the disk; the next line let through says how
    many were held back. Not thread-safe: one per event loop, as the webhook's are."""

    __slots__ = ("_held", "_interval", "_next")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = float("-inf")
        self._held = 0

    def admit(self, now: float) -> int | None:
        """None to hold this line back (it is counted); else how many were held before it."""
        if now < self._next:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next = now + self._interval
        return held


def configure(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # TSC logs response bodies (debug) and 409093 (warning); the relay logs what matters.
    logging.getLogger("TSC").setLevel(max(logging.ERROR, root.level))
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # httpx logs every request at INFO (the dbt Cloud client's); the relay logs its retries.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text
