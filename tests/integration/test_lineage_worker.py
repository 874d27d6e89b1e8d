"""The worker's lineage side alone: a resolver that fails in each way a real one can."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from harness import wait_until

from dbt_tableau_relay.config import LineageSource, WorkerSettings
from dbt_tableau_relay.errors import LineageError, TransientDbtCloudError
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.lineage.model import Decision
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.rules import PlannedLineage
from dbt_tableau_relay.runs import LineageJob, lineage_jobs_of_run
from dbt_tableau_relay.store import Store
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.worker import Worker

SETTINGS = WorkerSettings(
    concurrency=2, max_attempts=3, retry_base_seconds=0.01, lease_seconds=0.3, poll_interval=0.05
)


class Resolver:
    """Raises `error` every time, counting its calls."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.calls = error, 0

    def decide(self, run_id: str, sources: Sequence[LineageSource]) -> list[Decision]:
        self.calls += 1
        raise self.error


def queue_lineage(store: Store, run_id: str = "9001") -> None:
    at = datetime.now(UTC)
    ev = DbtEvent(
        event_id=f"wev_{run_id}",
        event_type="job.run.completed",
        timestamp=at,
        account_id="1",
        job_id="123",
        run_id=run_id,
        run_status_code=10,
    )
    plan = PlannedLineage("downstream", ("exposures",), wait=True, incremental=False)
    with store.transaction() as conn:
        write_batch(conn, [Submission(b"{}", at, ev, lineage=(plan,))], at)


def settle(store: Store, resolver: Resolver) -> LineageJob:
    worker = Worker(store, cast(TableauClient, None), SETTINGS, resolver=resolver)
    worker.start()
    try:
        wait_until(
            lambda: [j.state for j in lineage_jobs_of_run(store, "9001")] in (["dead"], ["failed"]),
            30,
        )
    finally:
        worker.stop()
    [job] = lineage_jobs_of_run(store, "9001")
    return job


@pytest.fixture
def store(tmp_path: Any) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'relay.db'}")
    store.migrate()
    return store


def test_a_resolver_that_crashes_every_time_ends_the_job_dead(store: Store) -> None:
    queue_lineage(store)
    resolver = Resolver(RuntimeError("a bug in the relay"))  # not a RelayError
    job = settle(store, resolver)
    assert job.state == "dead"
    assert resolver.calls == SETTINGS.max_attempts
    assert job.error == f"{SETTINGS.max_attempts} attempts interrupted (worker.max_attempts)"


def test_a_transient_failure_is_retried_then_dead(store: Store) -> None:
    queue_lineage(store)
    resolver = Resolver(TransientDbtCloudError("dbt Cloud answered 503"))
    job = settle(store, resolver)
    assert (job.state, job.error) == ("dead", "dbt Cloud answered 503")
    assert resolver.calls == SETTINGS.max_attempts


def test_a_permanent_failure_fails_at_once_with_the_reason(store: Store) -> None:
    queue_lineage(store)
    resolver = Resolver(LineageError("dbt run 9001 has no build/run/seed/snapshot step"))
    job = settle(store, resolver)
    assert (job.state, resolver.calls) == ("failed", 1)
    assert job.error == "dbt run 9001 has no build/run/seed/snapshot step"
