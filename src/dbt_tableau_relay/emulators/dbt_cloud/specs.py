"""Runs from specs: the same keys from Python, the JSON control endpoint and a state file.

A run spec: `id`, `account_id`, `job_id`, `environment_id`, `project_id`,
`status` (default 10), `steps`, `setup_steps`, `created_at`, `started_at`,
`finished_at` (epoch seconds or ISO 8601), `cause`, `job_name`. A step spec is
a string (a dbt command such as "dbt build", or a step name as is) or a
mapping with `command` or `name`, `status` (default: the run's) and
`artifacts` (file name -> JSON value, text or bytes) or, in a state file,
`artifact_files` (file name -> path, relative to the state file).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dbt_tableau_relay.emulators.dbt_cloud.model import (
    COMPLETE,
    QUEUED,
    SETUP_STEPS,
    SUCCESS,
    Job,
    Run,
    Step,
    check_status,
    parse_time,
    step_name,
)
from dbt_tableau_relay.emulators.dbt_cloud.state import CloudState

StepSpec = str | Mapping[str, Any]
RUN_KEYS = frozenset(
    {
        "id",
        "account_id",
        "job_id",
        "environment_id",
        "project_id",
        "status",
        "steps",
        "setup_steps",
        "created_at",
        "started_at",
        "finished_at",
        "cause",
        "job_name",
    }
)
STEP_KEYS = frozenset({"name", "command", "status", "artifacts", "artifact_files"})
STATE_KEYS = frozenset({"runs", "jobs", "artifact_delay"})
JOB_KEYS = frozenset(
    {"id", "account_id", "project_id", "environment_id", "name", "execute_steps", "generate_docs"}
)


def encode_artifact(content: Any) -> bytes:
    """Bytes as they are, text as UTF-8, anything else as JSON."""
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode()
    return json.dumps(content).encode()


def build_run(state: CloudState, spec: Mapping[str, Any], base_dir: Path | None = None) -> Run:
    """A new run (not yet added) from a run spec; its job is created when unknown."""
    _no_unknown(spec, RUN_KEYS, "run")
    status = check_status(int(spec.get("status", SUCCESS)))
    account_id = int(spec.get("account_id") or state.default_account)
    created_at, started_at, finished_at = _times(status, spec)
    specs: list[StepSpec] = [*SETUP_STEPS] if spec.get("setup_steps") else []
    specs += list(_steps_of(spec.get("steps", ("dbt build",))))
    steps = [_step(state, i, s, status, base_dir) for i, s in enumerate(specs, start=1)]
    run = Run(
        id=int(spec.get("id") or state.next_run_id()),
        account_id=account_id,
        job_id=int(spec.get("job_id", 1)),
        environment_id=int(spec.get("environment_id", 1)),
        project_id=int(spec.get("project_id", 1)),
        status=status,
        steps=steps,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
    )
    if "cause" in spec:
        run.cause = str(spec["cause"])
    _ensure_job(state, run, spec.get("job_name"))
    return run


def load_state(state: CloudState, data: Mapping[str, Any], base_dir: Path | None = None) -> None:
    """Jobs and runs of a state file (or a control-endpoint body) into `state`."""
    _no_unknown(data, STATE_KEYS, "state")
    if "artifact_delay" in data:
        state.artifact_delay = float(data["artifact_delay"])
    for job in data.get("jobs", ()):
        state.add_job(build_job(state, job))
    for spec in data.get("runs", ()):
        state.add_run(build_run(state, spec, base_dir))


def build_job(state: CloudState, spec: Mapping[str, Any]) -> Job:
    _no_unknown(spec, JOB_KEYS, "job")
    return Job(
        id=int(spec["id"]),
        account_id=int(spec.get("account_id") or state.default_account),
        project_id=int(spec.get("project_id", 1)),
        environment_id=int(spec.get("environment_id", 1)),
        name=str(spec.get("name", f"Job {spec['id']}")),
        execute_steps=[str(s) for s in spec.get("execute_steps", ("dbt build",))],
        generate_docs=bool(spec.get("generate_docs", False)),
        created_at=time.time(),
    )


def artifacts_of(content: Mapping[str, Any]) -> dict[str, bytes]:
    return {str(name): encode_artifact(value) for name, value in content.items()}


def _steps_of(value: Any) -> Sequence[StepSpec]:
    if isinstance(value, str | Mapping) or not isinstance(value, Sequence):
        raise ValueError("steps must be a list of commands or step mappings")
    return value


def _step(
    state: CloudState, index: int, spec: StepSpec, run_status: int, base_dir: Path | None
) -> Step:
    if isinstance(spec, str):
        spec = {"command": spec}
    _no_unknown(spec, STEP_KEYS, "step")
    name = str(spec.get("name") or step_name(str(spec.get("command", ""))))
    if not name:
        raise ValueError("a step needs a name or a command")
    artifacts = artifacts_of(spec.get("artifacts", {}))
    for file_name, path in spec.get("artifact_files", {}).items():
        artifacts[str(file_name)] = ((base_dir or Path.cwd()) / str(path)).read_bytes()
    status = check_status(int(spec.get("status", run_status)))
    return Step(state.next_step_id(), index, name, status, artifacts)


def _times(status: int, spec: Mapping[str, Any]) -> tuple[float, float | None, float | None]:
    """Plausible created/started/finished times for a run in `status`, unless given."""
    now = time.time()
    finished = parse_time(spec.get("finished_at"))
    if status in COMPLETE and finished is None:
        finished = now
    started = parse_time(spec.get("started_at"))
    if started is None and status != QUEUED:
        started = finished - 60.0 if finished is not None else now
    created = parse_time(spec.get("created_at"))
    if created is None:
        created = (started if started is not None else now) - 15.0
    return created, started, finished


def _ensure_job(state: CloudState, run: Run, name: Any) -> None:
    if state.job(run.account_id, run.job_id) is not None:
        return
    commands = [s.name.split("`")[1] for s in run.steps if s.name.startswith("Invoke dbt with `")]
    job = Job(
        id=run.job_id,
        account_id=run.account_id,
        project_id=run.project_id,
        environment_id=run.environment_id,
        name=str(name or f"Job {run.job_id}"),
        execute_steps=[c for c in commands if c not in ("dbt deps", "dbt docs generate")],
        generate_docs="dbt docs generate" in commands,
        created_at=run.created_at,
    )
    state.add_job(job)


def _no_unknown(spec: Mapping[str, Any], known: frozenset[str], what: str) -> None:
    if not isinstance(spec, Mapping):
        raise ValueError(f"a {what} must be a JSON object")
    if unknown := sorted(set(spec) - known):
        raise ValueError(f"unknown {what} key(s): {', '.join(unknown)}")
