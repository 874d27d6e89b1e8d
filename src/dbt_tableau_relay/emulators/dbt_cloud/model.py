"""Jobs, runs and steps as the emulator holds them, and as dbt Cloud renders them in JSON.

Field names, status codes and the timestamp form ("2021-11-26 16:48:41.431645+00:00",
a space, not a "T") follow dbt-labs/dbt-cloud-openapi-spec's v2 `RunResponse`,
`RunStepResponse` and `InternalJobDefinition`, and answers recorded in the wild.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

QUEUED, STARTING, RUNNING, SUCCESS, ERROR, CANCELLED = 1, 2, 3, 10, 20, 30
HUMANIZED = {
    QUEUED: "Queued",
    STARTING: "Starting",
    RUNNING: "Running",
    SUCCESS: "Success",
    ERROR: "Error",
    CANCELLED: "Cancelled",
}
COMPLETE = frozenset({SUCCESS, ERROR, CANCELLED})
_COLORS = {SUCCESS: "#28a745", ERROR: "#e84343", CANCELLED: "#818181"}

# What dbt Cloud runs before the job's own commands, each a step of the run.
SETUP_STEPS = (
    "Clone git repository",
    "Create profile from connection Snowflake",
    "Invoke dbt with `dbt deps`",
)


def check_status(status: int) -> int:
    if status not in HUMANIZED:
        raise ValueError(f"unknown run status {status}: one of {sorted(HUMANIZED)}")
    return status


def step_name(command: str) -> str:
    """dbt Cloud names a step after its command: "Invoke dbt with `dbt build`"."""
    return f"Invoke dbt with `{command}`" if command.startswith("dbt ") else command


@dataclass
class Step:
    id: int
    index: int  # 1-based, as `?step=N` counts
    name: str
    status: int
    artifacts: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Job:
    id: int
    account_id: int
    project_id: int
    environment_id: int
    name: str
    execute_steps: list[str]
    generate_docs: bool = False
    created_at: float = 0.0


@dataclass
class Run:
    id: int
    account_id: int
    job_id: int
    environment_id: int
    project_id: int
    status: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    steps: list[Step]
    cause: str = "Kicked off from the dbt Cloud emulator"
    git_branch: str = "main"
    git_sha: str = "0" * 40
    dbt_version: str = "1.9.0-latest"

    @property
    def is_complete(self) -> bool:
        return self.status in COMPLETE

    def step(self, index: int | None) -> Step | None:
        """The step `?step=index` names; without an index the run's last step."""
        if not self.steps:
            return None
        if index is None:
            return self.steps[-1]
        return next((s for s in self.steps if s.index == index), None)

    def artifacts_ready(self, now: float, delay: float) -> bool:
        """Finished runs serve artifacts `delay` seconds after they finish (ingestion)."""
        return self.finished_at is not None and self.is_complete and now >= self.finished_at + delay


def timestamp(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(sep=" ", timespec="microseconds")


def parse_time(value: Any) -> float | None:
    """A time given to the emulator: epoch seconds, an ISO string or a datetime."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _duration(start: float | None, end: float | None) -> tuple[str, str]:
    """("00:00:51", "51 seconds") as dbt shows them."""
    seconds = int(max(0.0, (end or 0.0) - (start or 0.0))) if start is not None else 0
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    words = [
        f"{n} {unit}{'s' if n != 1 else ''}"
        for n, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second"))
        if n
    ]
    return f"{hours:02d}:{minutes:02d}:{secs:02d}", " ".join(words) or "0 seconds"


def step_json(step: Step, run: Run) -> dict[str, Any]:
    duration, humanized = _duration(run.started_at, run.finished_at or run.started_at)
    return {
        "id": step.id,
        "run_id": run.id,
        "account_id": run.account_id,
        "index": step.index,
        "status": step.status,
        "name": step.name,
        "logs": f"{step.name}: {HUMANIZED[step.status].lower()}",
        "debug_logs": "",
        "log_path": None,
        "debug_log_path": None,
        "truncated_debug_logs": "",
        "created_at": timestamp(run.created_at),
        "updated_at": timestamp(run.finished_at or run.started_at or run.created_at),
        "started_at": timestamp(run.started_at),
        "finished_at": timestamp(run.finished_at) if step.status in COMPLETE else None,
        "status_color": _COLORS.get(step.status, "#3d8fd1"),
        "status_humanized": HUMANIZED[step.status],
        "duration": duration,
        "duration_humanized": humanized,
    }


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "account_id": job.account_id,
        "project_id": job.project_id,
        "environment_id": job.environment_id,
        "name": job.name,
        "description": "",
        "dbt_version": None,
        "execute_steps": list(job.execute_steps),
        "generate_docs": job.generate_docs,
        "run_generate_sources": False,
        "job_type": "scheduled",
        "state": 1,
        "lifecycle_webhooks": False,
        "execution": {"timeout_seconds": 0},
        "settings": {"threads": 4, "target_name": "default"},
        "triggers": {"github_webhook": False, "git_provider_webhook": False, "schedule": False},
        "created_at": timestamp(job.created_at),
        "updated_at": timestamp(job.created_at),
    }


def run_json(
    run: Run, *, href: str, job: Job | None, include: frozenset[str], artifacts_saved: bool
) -> dict[str, Any]:
    """A run as `GET .../runs/{id}/` answers it; related objects only when included."""
    duration, duration_words = _duration(run.created_at, run.finished_at)
    run_duration, run_words = _duration(run.started_at, run.finished_at)
    return {
        "id": run.id,
        "trigger_id": run.id,
        "account_id": run.account_id,
        "environment_id": run.environment_id,
        "project_id": run.project_id,
        "job_definition_id": run.job_id,
        "job_id": run.job_id,
        "status": run.status,
        "status_humanized": HUMANIZED[run.status],
        "status_message": None,
        "dbt_version": run.dbt_version,
        "git_branch": run.git_branch,
        "git_sha": run.git_sha,
        "artifacts_saved": artifacts_saved,
        "artifact_s3_path": f"prod/runs/{run.id}/artifacts/target",
        "has_docs_generated": any("docs generate" in s.name for s in run.steps),
        "has_sources_generated": any("source freshness" in s.name for s in run.steps),
        "notifications_sent": run.is_complete,
        "blocked_by": [],
        "created_at": timestamp(run.created_at),
        "updated_at": timestamp(run.finished_at or run.started_at or run.created_at),
        "dequeued_at": timestamp(run.started_at),
        "started_at": timestamp(run.started_at),
        "finished_at": timestamp(run.finished_at),
        "in_progress": run.status in (STARTING, RUNNING),
        "is_running": run.status == RUNNING,
        "is_complete": run.is_complete,
        "is_success": run.status == SUCCESS,
        "is_error": run.status == ERROR,
        "is_cancelled": run.status == CANCELLED,
        "duration": duration,
        "duration_humanized": duration_words,
        "run_duration": run_duration,
        "run_duration_humanized": run_words,
        "href": href,
        "trigger": _trigger(run) if "trigger" in include else None,
        "job": job_json(job) if job is not None and "job" in include else None,
        "environment": None,
        "run_steps": [step_json(s, run) for s in run.steps] if "run_steps" in include else [],
    }


def _trigger(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "cause": run.cause,
        "job_definition_id": run.job_id,
        "git_branch": None,
        "git_sha": None,
        "steps_override": None,
        "created_at": timestamp(run.created_at),
    }
