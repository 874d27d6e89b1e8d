"""The worker against what a third party can do to it, on SQLite and PostgreSQL: Tableau
answers that do not fit the store's columns, and a job whose processing crashes every time.

Tableau is a fake here (a class with `refresh` and `job`), as no real Tableau sends a job id
of 300 characters; the worker, the queue and the database are real.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from harness import wait_until

from dbt_tableau_relay.config import Rule, Target, WorkerSettings
from dbt_tableau_relay.errors import PermanentTableauError
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.queue import FINAL_STATES
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.rules import match
from dbt_tableau_relay.store import MAX_TEXT, RefreshJob, Store
from dbt_tableau_relay.tableau import TableauClient, TableauJob
from dbt_tableau_relay.targets import Item
from dbt_tableau_relay.worker import Worker

RULE = Rule.model_validate({"name": "sales", "refresh": [{"workbook": "Sales/Overview"}]})
LONG_JOB_ID = "7ddf0fe9-3ff6-4e62-b43f-e0ecb756fede" * 8  # 296 characters; the column has 64
LONG_LUID = "f79e8392-a105-586f-a029-b19da8945140" * 4
HUGE_NOTES = "com.tableausoftware.nativeapi.exceptions.DataSourceException:\x00 " * 5000
SETTINGS = WorkerSettings(
    concurrency=2, max_attempts=3, lease_seconds=0.3, poll_interval=0.05, retry_base_seconds=0.05
)


@dataclass
class FakeTableau:
    """`refresh` answers `job_id` (or raises `error`); `job` says it finished `finish_code`."""

    job_id: str = LONG_JOB_ID
    error: Exception | None = None
    poll_error: Exception | None = None
    finish_code: int = 1
    notes: tuple[str, ...] = (HUGE_NOTES,)
    refreshes: list[Target] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, target: Target, *, incremental: bool = False) -> tuple[Item, TableauJob]:
        with self.lock:
            self.refreshes.append(target)
        if self.error is not None:
            raise self.error
        item = Item("workbook", LONG_LUID, "Overview", "Sales")
        return item, TableauJob(id=self.job_id)

    def resolve(self, target: Target) -> Item:
        return Item("workbook", LONG_LUID, "Overview", "Sales")

    def refresh_candidates(self, item: Item, since: datetime, *, incremental: bool) -> list[Any]:
        return []  # a PAT that may list jobs; none was started: send again

    def job(self, job_id: str) -> TableauJob:
        if self.poll_error is not None:
            raise self.poll_error
        done = datetime.now(UTC)
        return TableauJob(job_id, completed_at=done, finish_code=self.finish_code, notes=self.notes)


def queue_a_job(store: Store) -> int:
    at = datetime.now(UTC)
    ev = DbtEvent(
        event_id=f"wev_{at.timestamp()}",
        event_type="job.run.completed",
        timestamp=at,
        account_id="1",
        job_id="123",
        run_id=f"run-{at.timestamp()}",
        run_status_code=10,
    )
    with store.transaction() as conn:
        [recorded] = write_batch(conn, [Submission(b"{}", at, ev, match([RULE], ev))], at)
    return recorded.job_ids[0]


@pytest.fixture
def run(store: Store) -> Iterator[object]:
    workers: list[Worker] = []

    def start(tableau: FakeTableau) -> None:
        worker = Worker(store, cast(TableauClient, tableau), SETTINGS, worker_id="w1")
        worker.start()
        workers.append(worker)

    yield start
    for worker in workers:
        worker.stop()


def settled(store: Store, job_id: int) -> RefreshJob:
    def final() -> bool:
        job = store.get_job(job_id)
        return job is not None and job.state in FINAL_STATES

    wait_until(final, timeout=30)
    job = store.get_job(job_id)
    assert job is not None
    return job


def test_a_job_id_luid_and_notes_that_do_not_fit_are_cut_to_fit(store: Store, run: object) -> None:
    """On PostgreSQL a 296-character job id failed sent(), and the job was sent again at
    every lease, forever."""
    job_id = queue_a_job(store)
    tableau = FakeTableau(finish_code=2**40)  # an integer no INTEGER column holds, too
    run(tableau)  # type: ignore[operator]
    job = settled(store, job_id)
    assert job.state == "failed"
    assert len(tableau.refreshes) == 1
    assert job.tableau_job_id == LONG_JOB_ID[:63] + "\u2026"
    assert job.item_luid == LONG_LUID[:63] + "\u2026"
    assert job.finish_code is None
    assert job.error is not None
    assert len(job.error) == MAX_TEXT
    assert "\x00" not in job.error
    assert [a.tableau_job_id for a in job.attempt_log] == [job.tableau_job_id] * 2


def test_an_error_code_that_does_not_fit_is_cut_to_fit(store: Store, run: object) -> None:
    job_id = queue_a_job(store)
    code = "403" + "9" * 40
    run(FakeTableau(error=PermanentTableauError("Forbidden", code=code, status=403)))  # type: ignore[operator]
    job = settled(store, job_id)
    assert job.state == "failed"
    assert job.error_code == code[:15] + "\u2026"
    assert job.attempt_log[-1].error_code == job.error_code


def test_a_job_that_crashes_every_time_is_dead_after_max_attempts(
    store: Store, run: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    job_id = queue_a_job(store)
    tableau = FakeTableau(error=RuntimeError("a bug in the relay"))  # not a TableauError
    run(tableau)  # type: ignore[operator]
    job = settled(store, job_id)
    assert job.state == "dead"
    assert len(tableau.refreshes) == SETTINGS.max_attempts
    assert job.attempts == SETTINGS.max_attempts
    assert job.error is not None
    assert job.error.startswith(f"{SETTINGS.max_attempts} failed or interrupted attempts")
    outcomes = [a.outcome for a in job.attempt_log]
    assert outcomes == ["interrupted"] * SETTINGS.max_attempts + ["exhausted"]
    assert caplog.messages.count("refresh.crashed") == SETTINGS.max_attempts


def test_a_job_whose_follow_up_crashes_every_time_is_dead_after_max_attempts(
    store: Store, run: object
) -> None:
    """Sent once, then every poll crashes: it is not polled at every lease, forever."""
    job_id = queue_a_job(store)
    tableau = FakeTableau(job_id="a-job", poll_error=RuntimeError("a bug in the relay"))
    run(tableau)  # type: ignore[operator]
    job = settled(store, job_id)
    assert job.state == "dead"
    assert len(tableau.refreshes) == 1
    outcomes = [a.outcome for a in job.attempt_log]
    assert outcomes == ["accepted"] + ["interrupted"] * SETTINGS.max_attempts + ["exhausted"]
