"""The dbt Cloud Admin API v2 client: a run with its steps, recent runs, a step's artifacts.

Every call retries what may pass on a second try (429, honouring Retry-After;
5xx; timeouts; dropped connections) with exponential backoff and full jitter,
and fails at once on what will not (400, 401, 403, 404). httpx errors are
translated here into `DbtCloudError`s; the token goes out in the
`Authorization` header only and never into a log line, an error or a repr.

dbt Cloud writes a run's artifacts after the run ends, so a just-finished
run's artifact can answer 404 for a while: `artifact` waits for it while the
run finished less than `artifact_wait` seconds ago, then gives up with
`ArtifactNotFoundError`. Without `step`, dbt serves the run's *last* step's
file, which for a job that generates docs is `dbt docs generate`'s.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from dbt_tableau_relay.config import DbtCloudSettings
from dbt_tableau_relay.dbt_cloud_errors import Backoff, error_for
from dbt_tableau_relay.errors import (
    ArtifactNotFoundError,
    DbtCloudError,
    PermanentDbtCloudError,
    TransientDbtCloudError,
)

__all__ = [
    "Backoff",
    "DbtCloudClient",
    "Run",
    "RunStatus",
    "RunStep",
    "parse_run",
    "parse_time",
]

log = logging.getLogger(__name__)

MAX_PAGE = 100  # dbt Cloud's largest `limit`


class RunStatus(IntEnum):
    """dbt Cloud's run (and step) status codes."""

    QUEUED = 1
    STARTING = 2
    RUNNING = 3
    SUCCESS = 10
    ERROR = 20
    CANCELLED = 30


@dataclass(frozen=True)
class RunStep:
    """One step of a run; `index` counts from 1, as the artifacts' `?step=` does."""

    index: int
    name: str  # e.g. "Invoke dbt with `dbt build`"
    status: int  # a RunStatus code
    id: int | None = None


@dataclass(frozen=True)
class Run:
    """A dbt Cloud run; `steps` is empty when listed (the list does not carry them)."""

    id: int
    account_id: int
    job_id: int
    environment_id: int | None
    project_id: int | None
    status: int  # a RunStatus code; an unknown future code is kept as it came
    is_complete: bool
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: tuple[RunStep, ...] = ()
    status_humanized: str = ""
    href: str = ""

    @property
    def is_success(self) -> bool:
        return self.status == RunStatus.SUCCESS

    @property
    def is_error(self) -> bool:
        return self.status == RunStatus.ERROR

    @property
    def is_cancelled(self) -> bool:
        return self.status == RunStatus.CANCELLED


def parse_time(value: Any) -> datetime | None:
    """dbt's "2021-11-26 16:48:41.431645+00:00" (or ISO with T/Z); naive means UTC."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise PermanentDbtCloudError(
            f"dbt Cloud sent a time that is not ISO 8601: {value!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_run(data: Mapping[str, Any]) -> Run:
    """A run object of the API (the `data` of GET .../runs/{id}/, or one of the list)."""
    try:
        steps = tuple(
            RunStep(int(s["index"]), str(s["name"]), int(s["status"]), _opt_int(s.get("id")))
            for s in data.get("run_steps") or ()
        )
        status = int(data["status"])
        return Run(
            id=int(data["id"]),
            account_id=int(data["account_id"]),
            job_id=int(data.get("job_definition_id") or data["job_id"]),
            environment_id=_opt_int(data.get("environment_id")),
            project_id=_opt_int(data.get("project_id")),
            status=status,
            is_complete=bool(data.get("is_complete", status in (10, 20, 30))),
            created_at=parse_time(data.get("created_at")),
            started_at=parse_time(data.get("started_at")),
            finished_at=parse_time(data.get("finished_at")),
            steps=tuple(sorted(steps, key=lambda s: s.index)),
            status_humanized=str(data.get("status_humanized") or ""),
            href=str(data.get("href") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentDbtCloudError(
            f"dbt Cloud sent a run this relay cannot read: {exc!r}"
        ) from None


class DbtCloudClient:
    """The Admin API v2 of one dbt Cloud account. Thread-safe: share one per process."""

    def __init__(
        self,
        settings: DbtCloudSettings,
        *,
        timeout: float = 30.0,
        artifact_wait: float = 180.0,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.access_url = settings.access_url
        self.account_id = settings.account_id
        self.artifact_wait = artifact_wait
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=f"{settings.access_url}/api/v2/accounts/{settings.account_id}/",
            headers={
                "Authorization": f"Token {settings.api_token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": "dbt-tableau-relay",
            },
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"DbtCloudClient(access_url={self.access_url!r}, account_id={self.account_id})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DbtCloudClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- runs -----------------------------------------------------------------------

    def get_run(self, run_id: int | str) -> Run:
        """The run with its steps."""
        answer = self._get_json(f"runs/{_id(run_id)}/", {"include_related": '["run_steps"]'})
        return parse_run(_data(answer, dict))

    def list_runs(
        self,
        job_id: int | str | None = None,
        *,
        environment_id: int | str | None = None,
        project_id: int | str | None = None,
        status: Iterable[int] | None = None,
        limit: int = MAX_PAGE,
        offset: int = 0,
        finished_after: datetime | None = None,
    ) -> list[Run]:
        """One page of runs, most recent (highest id) first, without their steps.

        `finished_after` keeps the page's runs that finished after that moment
        (unfinished runs drop out); it filters here, not in dbt Cloud, whose
        date-range syntax is not documented.
        """
        ids = {
            "job_definition_id": job_id,
            "environment_id": environment_id,
            "project_id": project_id,
        }
        wanted = sorted({int(s) for s in status}) if status is not None else None
        params = _list_params(ids, wanted, limit, offset)
        runs = [parse_run(r) for r in _data(self._get_json("runs/", params), list)]
        if wanted is not None:  # also here: the list syntax of status__in is not documented
            runs = [r for r in runs if r.status in wanted]
        if finished_after is not None:
            runs = [r for r in runs if r.finished_at is not None and r.finished_at > finished_after]
        return runs

    # -- artifacts ------------------------------------------------------------------

    def artifact(self, run_id: int | str, name: str, step: int | None = None) -> bytes:
        """The file `name` (e.g. "run_results.json") of step `step` (1-based; None: the last)."""
        path = f"runs/{_id(run_id)}/artifacts/{_artifact_path(name)}"
        params = {"step": step} if step is not None else None
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                return self._get(path, params).content
            except PermanentDbtCloudError as exc:
                if exc.status != 404:
                    raise
            if deadline is None:
                deadline = self._ingestion_deadline(run_id, name, step)
            attempt += 1
            self._wait_for_artifact(deadline, attempt, run_id, name, step)

    def artifact_json(
        self, run_id: int | str, name: str, step: int | None = None
    ) -> dict[str, Any]:
        """`artifact`, parsed: manifest.json and run_results.json are JSON objects."""
        content = self.artifact(run_id, name, step)
        try:
            data = json.loads(content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PermanentDbtCloudError(f"{name} of run {run_id} is not a JSON object")
        return data

    def _ingestion_deadline(self, run_id: int | str, name: str, step: int | None) -> float:
        """When to stop waiting for a 404 artifact (monotonic), or raise at once."""
        run = self.get_run(run_id)
        where = f"{name} of run {run.id}" + (f" step {step}" if step is not None else "")
        if not run.is_complete:
            raise TransientDbtCloudError(f"{where}: the run is still running", status=404)
        if step is not None and all(s.index != step for s in run.steps):
            indexes = ", ".join(str(s.index) for s in run.steps) or "none"
            raise ArtifactNotFoundError(
                f"{where}: the run has no such step (steps: {indexes})", status=404
            )
        finished = run.finished_at or datetime.now(UTC)
        age = (datetime.now(UTC) - finished).total_seconds()
        if age >= self.artifact_wait:
            raise ArtifactNotFoundError(
                f"{where}: not found (404), and the run finished {age:.0f}s ago, "
                f"past the {self.artifact_wait:g}s artifacts take to appear",
                status=404,
            )
        return time.monotonic() + (self.artifact_wait - max(0.0, age))

    def _wait_for_artifact(
        self, deadline: float, attempt: int, run_id: int | str, name: str, step: int | None
    ) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            where = f"{name} of run {run_id}" + (f" step {step}" if step is not None else "")
            raise ArtifactNotFoundError(
                f"{where}: still not found (404) {self.artifact_wait:g}s after the run finished",
                status=404,
            )
        delay = min(left, random.uniform(0.5, 1.0) * self.backoff.ceiling(attempt))
        log.info(
            "dbt_cloud.artifact_wait",
            extra={"run_id": str(run_id), "artifact": name, "step": step, "delay": round(delay, 3)},
        )
        self._sleep(delay)

    # -- HTTP -----------------------------------------------------------------------

    def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        response = self._get(path, params)
        try:
            return response.json()
        except ValueError:
            raise TransientDbtCloudError(f"GET {path}: dbt Cloud's answer is not JSON") from None

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        """GET with retries of transient failures; raises the last error otherwise."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._get_once(path, params)
            except DbtCloudError as exc:
                delay = self.backoff.delay(exc, attempt)
                if delay is None:
                    raise
                log.warning(
                    "dbt_cloud.retry",
                    extra={
                        "path": path,
                        "attempt": attempt,
                        "status": exc.status,
                        "delay": round(delay, 3),
                    },
                )
                self._sleep(delay)

    def _get_once(self, path: str, params: Mapping[str, Any] | None) -> httpx.Response:
        what = f"GET {path}"
        try:
            response = self._http.get(path, params=params)
        except httpx.TimeoutException:
            raise TransientDbtCloudError(f"{what}: timed out") from None
        except httpx.TransportError as exc:  # refused, reset, dropped mid-answer
            raise TransientDbtCloudError(f"{what}: {type(exc).__name__}: {exc}") from None
        if response.is_success:
            return response
        raise error_for(
            response.status_code, response.content, what, response.headers.get("Retry-After")
        )


def _list_params(
    ids: Mapping[str, int | str | None], status: list[int] | None, limit: int, offset: int
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ValueError(f"limit must be 1..{MAX_PAGE} and offset at least 0")
    params: dict[str, Any] = {"order_by": "-id", "limit": limit, "offset": offset}
    params.update({key: _id(value) for key, value in ids.items() if value is not None})
    if status is not None:
        params["status__in"] = json.dumps(status, separators=(",", ":"))  # [10,20]
    return params


def _data(answer: Any, kind: type) -> Any:
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, kind):
        raise PermanentDbtCloudError("dbt Cloud's answer has no `data` of the expected shape")
    return data


def _id(value: int | str) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise PermanentDbtCloudError(f"not a dbt Cloud id: {value!r}")
    return int(text)


def _opt_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _artifact_path(name: str) -> str:
    """The artifact's path, quoted; no way up out of the run's artifacts."""
    parts = name.strip("/").split("/")
    if not name.strip("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not an artifact path: {name!r}")
    return quote(name.strip("/"), safe="/")
