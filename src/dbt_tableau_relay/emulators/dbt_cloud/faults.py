"""Fault injection: what goes wrong with the next /api/ calls.

Faults never touch /_emulator/ control calls. At most one fault answers a
call, checked in this order: a dropped connection, a 429 (with Retry-After
unless told otherwise), a 5xx. Added latency applies on top to every /api/
call (set it above the client's timeout to make it time out).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["drop", "rate_limit", "fail"]


@dataclass(frozen=True)
class Fault:
    """The fault picked for one call."""

    kind: FaultKind
    status: int = 0
    retry_after: float | None = None


@dataclass
class _Budget:
    count: int = 0
    until: float = 0.0
    status: int = 503
    retry_after: float | None = 1.0

    def take(self) -> bool:
        if self.count > 0:
            self.count -= 1
            return True
        return time.monotonic() < self.until


class Faults:
    """Thread-safe fault settings; `latency` (seconds) may be set directly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency = 0.0
        self._fail = _Budget()
        self._rate_limit = _Budget()
        self._drop = _Budget()

    def fail(
        self, count: int | None = None, *, seconds: float | None = None, status: int = 503
    ) -> None:
        """Answer the next `count` calls (or all calls for `seconds`) with `status`."""
        if not 500 <= status <= 599:
            raise ValueError("status must be a 5xx")
        with self._lock:
            self._fail = _budget(count, seconds, status=status)

    def rate_limit(self, count: int = 1, *, retry_after: float | None = 1.0) -> None:
        """Answer the next `count` calls with 429; Retry-After unless `retry_after` is None."""
        with self._lock:
            self._rate_limit = _budget(count, None, retry_after=retry_after)

    def drop(self, count: int = 1) -> None:
        """Close the connection of the next `count` calls without answering."""
        with self._lock:
            self._drop = _budget(count, None)

    def clear(self) -> None:
        with self._lock:
            self.latency = 0.0
            self._fail, self._rate_limit, self._drop = _Budget(), _Budget(), _Budget()

    def take(self) -> Fault | None:
        """The fault for the call now starting, using up one of its budget."""
        with self._lock:
            if self._drop.take():
                return Fault("drop")
            if self._rate_limit.take():
                return Fault("rate_limit", 429, retry_after=self._rate_limit.retry_after)
            if self._fail.take():
                return Fault("fail", self._fail.status)
            return None

    def configure(self, spec: dict[str, Any]) -> None:
        """Apply a JSON fault spec, as POSTed to /_emulator/faults."""
        if unknown := set(spec) - {"clear", "latency", "fail", "rate_limit", "drop"}:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        if spec.get("clear"):
            self.clear()
        if "latency" in spec:
            self.latency = float(spec["latency"])
        if (fail := spec.get("fail")) is not None:
            self.fail(fail.get("count"), **_pick(fail, "seconds", "status"))
        if (limit := spec.get("rate_limit")) is not None:
            self.rate_limit(limit.get("count", 1), **_pick(limit, "retry_after"))
        if (drop := spec.get("drop")) is not None:
            _pick(drop)
            self.drop(drop.get("count", 1))

    def describe(self) -> dict[str, Any]:
        with self._lock:
            left = max(0.0, self._fail.until - time.monotonic())
            return {
                "latency": self.latency,
                "fail": {"count": self._fail.count, "seconds_left": left},
                "rate_limit": {"count": self._rate_limit.count},
                "drop": {"count": self._drop.count},
            }


def _budget(count: int | None, seconds: float | None, **settings: Any) -> _Budget:
    if count is None and seconds is None:
        count = 1
    until = time.monotonic() + seconds if seconds is not None else 0.0
    return _Budget(count=int(count or 0), until=until, **settings)


def _pick(spec: dict[str, Any], *keys: str) -> dict[str, Any]:
    if unknown := set(spec) - {"count", *keys}:
        raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
    return {k: spec[k] for k in keys if k in spec}
