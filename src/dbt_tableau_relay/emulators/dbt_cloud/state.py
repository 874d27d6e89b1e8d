"""Everything the emulator remembers, behind one lock, and the request log."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dbt_tableau_relay.emulators.dbt_cloud.model import COMPLETE, Job, Run, check_status


@dataclass(frozen=True)
class RecordedRequest:
    """One /api/ call the emulator answered. Never holds a token.

    `status` is 0 for a call whose connection was dropped unanswered.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float
    had_token: bool

    @property
    def is_artifact(self) -> bool:
        return "/artifacts/" in self.path

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class CloudState:
    """Accounts, jobs and runs. Hold `lock` while touching anything."""

    def __init__(self, accounts: Mapping[int, str], artifact_delay: float) -> None:
        if not accounts:
            raise ValueError("the emulator needs at least one account")
        self.lock = threading.RLock()
        self.accounts = {int(k): str(v) for k, v in accounts.items()}  # account id -> token
        self.artifact_delay = float(artifact_delay)
        self.jobs: dict[tuple[int, int], Job] = {}
        self.runs: dict[int, Run] = {}
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        # What reset() goes back to: a state file's jobs and runs, and its folder.
        self.initial: tuple[Mapping[str, Any], Path | None] | None = None
        self._run_ids = itertools.count(70_000_001)
        self._step_ids = itertools.count(90_000_001)

    @property
    def default_account(self) -> int:
        return next(iter(self.accounts))

    def account_of(self, token: str) -> int | None:
        return next((a for a, t in self.accounts.items() if t == token), None)

    def next_run_id(self) -> int:
        with self.lock:
            run_id = next(self._run_ids)
            while run_id in self.runs:
                run_id = next(self._run_ids)
            return run_id

    def next_step_id(self) -> int:
        with self.lock:
            return next(self._step_ids)

    def add_job(self, job: Job) -> Job:
        with self.lock:
            self.jobs[(job.account_id, job.id)] = job
            return job

    def job(self, account_id: int, job_id: int) -> Job | None:
        return self.jobs.get((account_id, job_id))

    def add_run(self, run: Run) -> Run:
        with self.lock:
            if run.account_id not in self.accounts:
                raise ValueError(f"no account {run.account_id}")
            if run.id in self.runs:
                raise ValueError(f"run {run.id} exists already")
            self.runs[run.id] = run
            return run

    def run(self, run_id: int) -> Run:
        with self.lock:
            if run_id not in self.runs:
                raise KeyError(f"no run {run_id}")
            return self.runs[run_id]

    def finish(
        self,
        run_id: int,
        status: int,
        finished_at: float | None,
        step_statuses: Mapping[int, int] | None = None,
    ) -> Run:
        """End a run: its status, finished_at; steps still going take the run's status."""
        if check_status(status) not in COMPLETE:
            raise ValueError(f"a run finishes with 10, 20 or 30, not {status}")
        with self.lock:
            run = self.run(run_id)
            run.status = status
            run.finished_at = finished_at if finished_at is not None else time.time()
            run.started_at = run.started_at if run.started_at is not None else run.finished_at
            given = {int(k): check_status(int(v)) for k, v in (step_statuses or {}).items()}
            for step in run.steps:
                step.status = given.get(step.index, step.status)
                if step.status not in COMPLETE:
                    step.status = status
            return run

    def set_artifacts(self, run_id: int, step: int | None, artifacts: Mapping[str, bytes]) -> None:
        """Add or replace files of one step (None: the last step)."""
        with self.lock:
            found = self.run(run_id).step(step)
            if found is None:
                raise KeyError(f"run {run_id} has no step {step}")
            found.artifacts.update(artifacts)

    def log(self, entry: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(entry)

    def reset(self) -> None:
        """No jobs, runs or recorded requests; accounts and settings stay.

        The caller loads `initial` again (specs.load_state).
        """
        with self.lock:
            self.jobs.clear()
            self.runs.clear()
            self.requests.clear()
