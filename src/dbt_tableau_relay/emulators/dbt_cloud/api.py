"""The Admin API v2 endpoints: a run, the runs list, a run's artifacts.

Answers are dbt's envelope `{"status": {code, is_success, user_message,
developer_message}, "data": ...}`, the list adds `extra` (filters, order_by,
pagination), and errors use the same envelope with `"data": null`. An
artifact answers the file itself.
"""

from __future__ import annotations

import json
import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbt_tableau_relay.emulators.dbt_cloud.model import Run, run_json
from dbt_tableau_relay.emulators.dbt_cloud.state import CloudState

# status, body, headers (Content-Type included)
Answer = tuple[int, bytes, dict[str, str]]
JSON_TYPE = "application/json"
MAX_LIMIT = 100  # dbt Cloud's documented largest page
ORDERS = frozenset({"id", "created_at", "finished_at"})


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names

    @property
    def token(self) -> str | None:
        """The token of `Authorization: Token <t>` or `Bearer <t>`."""
        scheme, _, value = self.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and value.strip():
            return value.strip()
        return None


def envelope(code: int, data: Any, message: str = "Success!", **extra: Any) -> bytes:
    status = {
        "code": code,
        "is_success": code < 400,
        "user_message": message,
        "developer_message": "" if code < 400 else None,
    }
    return json.dumps({"status": status, "data": data, **extra}).encode()


def error_answer(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    return status, envelope(status, None, message), {"Content-Type": JSON_TYPE, **(headers or {})}


def dispatch(state: CloudState, req: Request) -> Answer:
    for pattern, handler in _ROUTES:
        if match := pattern.match(req.path):
            if req.method != "GET":
                raise ApiError(405, f'Method "{req.method}" not allowed.')
            account_id = _authorize(state, req, match["account"])
            return handler(state, req, account_id, match.groupdict())
    raise ApiError(404, "The requested resource was not found.")


def _authorize(state: CloudState, req: Request, account: str) -> int:
    token = req.token
    if token is None:
        raise ApiError(401, "Authentication credentials were not provided.")
    with state.lock:
        owner = state.account_of(token)
    if owner is None:
        raise ApiError(401, "Invalid token.")
    if not account.isdigit() or int(account) != owner:
        raise ApiError(403, "You do not have permission to perform this action.")
    return owner


def _get_run(state: CloudState, req: Request, account_id: int, parts: dict[str, str]) -> Answer:
    include = _include(req.query.get("include_related", ""))
    with state.lock:
        run = _run_of(state, account_id, parts["run"])
        data = render_run(state, run, include)
    return 200, envelope(200, data), {"Content-Type": JSON_TYPE}


def _list_runs(state: CloudState, req: Request, account_id: int, parts: dict[str, str]) -> Answer:
    filters = _filters(req.query)
    order_by = req.query.get("order_by") or "id"
    if order_by.lstrip("-") not in ORDERS:
        raise ApiError(400, f"Invalid order_by: {order_by!r}.")
    limit, offset = _int(req.query, "limit", 100), _int(req.query, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}; offset at least 0.")
    include = _include(req.query.get("include_related", ""))
    with state.lock:
        runs = [r for r in state.runs.values() if r.account_id == account_id]
        runs = _ordered([r for r in runs if _matches(r, filters)], order_by)
        page = [render_run(state, r, include) for r in runs[offset : offset + limit]]
    extra = {
        "filters": {"account_id": account_id, **filters, "limit": limit, "offset": offset},
        "order_by": order_by,
        "pagination": {"count": len(page), "total_count": len(runs)},
    }
    return 200, envelope(200, page, extra=extra), {"Content-Type": JSON_TYPE}


def _artifact(state: CloudState, req: Request, account_id: int, parts: dict[str, str]) -> Answer:
    step_index = _step_index(req.query)
    with state.lock:
        run = _run_of(state, account_id, parts["run"])
        ready = run.artifacts_ready(time.time(), state.artifact_delay)
        step = run.step(step_index)
        content = step.artifacts.get(parts["path"]) if (ready and step) else None
    if content is None:
        raise ApiError(404, "The requested resource was not found.")
    ctype = mimetypes.guess_type(parts["path"])[0] or "application/octet-stream"
    return 200, content, {"Content-Type": ctype}


def _step_index(query: dict[str, str]) -> int | None:
    """`?step=N` counts from 1; without it, the run's last step (dbt's default)."""
    if query.get("step", "") == "":
        return None
    index = _int(query, "step", 0)
    if index < 1:
        raise ApiError(400, "step must be 1 or more.")
    return index


def render_run(state: CloudState, run: Run, include: frozenset[str]) -> dict[str, Any]:
    href = f"{state.base_url}/deploy/{run.account_id}/projects/{run.project_id}/runs/{run.id}/"
    saved = run.artifacts_ready(time.time(), state.artifact_delay)
    job = state.job(run.account_id, run.job_id)
    return run_json(run, href=href, job=job, include=include, artifacts_saved=saved)


def _run_of(state: CloudState, account_id: int, run_id: str) -> Run:
    run = state.runs.get(int(run_id)) if run_id.isdigit() else None
    if run is None or run.account_id != account_id:
        raise ApiError(404, "The requested resource was not found.")
    return run


_INT_FILTERS = {
    "job_definition_id": "job_id",
    "environment_id": "environment_id",
    "project_id": "project_id",
    "status": "status",
}


def _filters(query: dict[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {k: _int(query, k, 0) for k in _INT_FILTERS if query.get(k)}
    if query.get("status__in"):
        filters["status__in"] = [int(v) for v in _list(query["status__in"]) if v.isdigit()]
    if query.get("id__gt"):
        filters["id__gt"] = _int(query, "id__gt", 0)
    return filters


def _matches(run: Run, filters: dict[str, Any]) -> bool:
    for key, field in _INT_FILTERS.items():
        if key in filters and getattr(run, field) != filters[key]:
            return False
    if "status__in" in filters and run.status not in filters["status__in"]:
        return False
    return "id__gt" not in filters or run.id > filters["id__gt"]


def _ordered(runs: list[Run], order_by: str) -> list[Run]:
    """PostgreSQL's order: NULLs (unfinished runs) last ascending, first descending."""
    field, descending = order_by.lstrip("-"), order_by.startswith("-")

    def key(run: Run) -> tuple[bool, float]:
        value = getattr(run, field)
        return (value is None, value if value is not None else 0.0)

    runs = sorted(runs, key=key)
    return runs[::-1] if descending else runs


def _include(value: str) -> frozenset[str]:
    """`["run_steps","job"]` as dbt's docs write it, or plain `run_steps,job`."""
    return frozenset(_list(value))


def _list(value: str) -> list[str]:
    items = value.strip().removeprefix("[").removesuffix("]").split(",")
    return [v.strip().strip("'\"") for v in items if v.strip().strip("'\"")]


def _int(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer.") from None


_Handler = Callable[[CloudState, Request, int, dict[str, str]], Answer]
_ACCOUNT = r"^/api/v2/accounts/(?P<account>[^/]+)/runs"
_ROUTES: list[tuple[re.Pattern[str], _Handler]] = [
    (re.compile(_ACCOUNT + r"/?$"), _list_runs),
    (re.compile(_ACCOUNT + r"/(?P<run>[^/]+)/?$"), _get_run),
    (re.compile(_ACCOUNT + r"/(?P<run>[^/]+)/artifacts/(?P<path>.+)$"), _artifact),
]
