"""Fault injection: what goes wrong with the next /api/ calls.

Faults never touch /_emulator/ control calls. At most one fault answers a
call, checked in this order: a dropped connection, Tableau Cloud's HTML 429,
a 5xx. Added latency applies on top to every /api/ call. With
`processed=True` a 5xx or a drop comes after the request was carried out
(a refresh is then queued although the client saw a failure), as happens
when Tableau times out behind a proxy.

Two more apply to Metadata API queries only, after the HTTP faults:
`metadata_error` answers a GraphQL error and no data (RATE_EXCEEDED by
default), `metadata_partial` cuts the answer short and adds an error, as
Tableau does when a query reaches its time limit ("data" is still there).
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
    retry_after: float = 0.0
    processed: bool = False


@dataclass(frozen=True)
class MetadataFault:
    """A GraphQL error to answer a Metadata API query with."""

    code: str
    message: str
    partial: bool  # True: the data is kept, cut short; False: no data at all


RATE_EXCEEDED_MESSAGE = "Rate limit exceeded. Slow down the rate of queries and try again later."
TIME_LIMIT_MESSAGE = (
    "Reached time limit. Showing partial results. Use pagination, additional filtering, "
    "or both in the query to adjust results."
)


@dataclass
class _MetadataBudget:
    fault: MetadataFault
    count: int | None  # None: until cleared
    above_nodes: int = 0  # partial only for answers with more nodes than this

    def take(self, nodes: int) -> MetadataFault | None:
        if self.count == 0 or nodes <= self.above_nodes:
            return None
        if self.count is not None:
            self.count -= 1
        return self.fault


@dataclass
class _Budget:
    count: int = 0
    until: float = 0.0
    status: int = 503
    retry_after: float = 1.0
    processed: bool = False

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
        self._metadata_error: _MetadataBudget | None = None
        self._metadata_partial: _MetadataBudget | None = None

    def fail(
        self,
        count: int | None = None,
        *,
        seconds: float | None = None,
        status: int = 503,
        processed: bool = False,
    ) -> None:
        """Answer the next `count` calls (or all calls for `seconds`) with `status`."""
        if not 500 <= status <= 599:
            raise ValueError("status must be a 5xx")
        with self._lock:
            self._fail = _budget(count, seconds, status=status, processed=processed)

    def rate_limit(self, count: int = 1, *, retry_after: float = 1.0) -> None:
        """Answer the next `count` calls with Tableau Cloud's HTML 429 and Retry-After."""
        with self._lock:
            self._rate_limit = _budget(count, None, retry_after=retry_after)

    def drop(self, count: int = 1, *, processed: bool = False) -> None:
        """Close the connection of the next `count` calls without answering."""
        with self._lock:
            self._drop = _budget(count, None, processed=processed)

    def metadata_error(
        self, count: int = 1, *, code: str = "RATE_EXCEEDED", message: str | None = None
    ) -> None:
        """Answer the next `count` Metadata API queries with this error and no data."""
        text = message or (RATE_EXCEEDED_MESSAGE if code == "RATE_EXCEEDED" else code)
        with self._lock:
            self._metadata_error = _MetadataBudget(MetadataFault(code, text, False), count)

    def metadata_partial(
        self,
        count: int | None = None,
        *,
        above_nodes: int = 0,
        code: str = "TIME_LIMIT_EXCEEDED",
        message: str = TIME_LIMIT_MESSAGE,
    ) -> None:
        """Cut Metadata API answers of more than `above_nodes` nodes in half, with an error.

        `count` None: every such answer until cleared (smaller pages get through).
        """
        fault = MetadataFault(code, message, True)
        with self._lock:
            self._metadata_partial = _MetadataBudget(fault, count, above_nodes)

    def take_metadata_error(self) -> MetadataFault | None:
        with self._lock:
            return self._metadata_error.take(1) if self._metadata_error else None

    def take_metadata_partial(self, nodes: int) -> MetadataFault | None:
        with self._lock:
            return self._metadata_partial.take(nodes) if self._metadata_partial else None

    def clear(self) -> None:
        with self._lock:
            self.latency = 0.0
            self._fail, self._rate_limit, self._drop = _Budget(), _Budget(), _Budget()
            self._metadata_error = self._metadata_partial = None

    def take(self) -> Fault | None:
        """The fault for the call now starting, using up one of its budget."""
        with self._lock:
            if self._drop.take():
                return Fault("drop", processed=self._drop.processed)
            if self._rate_limit.take():
                return Fault("rate_limit", 429, retry_after=self._rate_limit.retry_after)
            if self._fail.take():
                return Fault("fail", self._fail.status, processed=self._fail.processed)
            return None

    def configure(self, spec: dict[str, Any]) -> None:
        """Apply a JSON fault spec, as POSTed to /_emulator/faults."""
        if spec.get("clear"):
            self.clear()
        if "latency" in spec:
            self.latency = float(spec["latency"])
        if (fail := spec.get("fail")) is not None:
            self.fail(fail.get("count"), **_pick(fail, "seconds", "status", "processed"))
        if (limit := spec.get("rate_limit")) is not None:
            self.rate_limit(limit.get("count", 1), **_pick(limit, "retry_after"))
        if (drop := spec.get("drop")) is not None:
            self.drop(drop.get("count", 1), **_pick(drop, "processed"))
        if (error := spec.get("metadata_error")) is not None:
            self.metadata_error(error.get("count", 1), **_pick(error, "code", "message"))
        if (partial := spec.get("metadata_partial")) is not None:
            keys = ("above_nodes", "code", "message")
            self.metadata_partial(partial.get("count"), **_pick(partial, *keys))

    def describe(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            return {
                "latency": self.latency,
                "fail": {
                    "count": self._fail.count,
                    "seconds_left": max(0.0, self._fail.until - now),
                },
                "rate_limit": {"count": self._rate_limit.count},
                "drop": {"count": self._drop.count},
                "metadata_error": _describe(self._metadata_error),
                "metadata_partial": _describe(self._metadata_partial),
            }


def _describe(budget: _MetadataBudget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"count": budget.count, "code": budget.fault.code, "above_nodes": budget.above_nodes}


def _budget(count: int | None, seconds: float | None, **settings: Any) -> _Budget:
    if count is None and seconds is None:
        count = 1
    until = time.monotonic() + seconds if seconds is not None else 0.0
    return _Budget(count=int(count or 0), until=until, **settings)


def _pick(spec: dict[str, Any], *keys: str) -> dict[str, Any]:
    unknown = set(spec) - {"count", *keys}
    if unknown:
        raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
    return {k: spec[k] for k in keys if k in spec}
