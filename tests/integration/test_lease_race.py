"""Two workers competing for one job's lease, on SQLite and on PostgreSQL.

Two `RefreshQueue`s with different worker ids claim at the same moment (two
threads released by one barrier): exactly one gets the job. Once its lease
has lapsed, the other takes the job over, and from then on every transition
of the first worker changes nothing (`_guarded`: `claimed_by`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import update

from dbt_tableau_relay.config import Rule
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.queue import ClaimedJob, RefreshQueue
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.rules import match
from dbt_tableau_relay.states import JobState
from dbt_tableau_relay.store import RefreshJob, Store, utcnow

RULES = [Rule.model_validate({"name": "r", "on": {"job_id": 1}, "refresh": [{"workbook": "S/X"}]})]


def record(store: Store) -> int:
    """One event, recorded as the recorder does; the id of its queued job."""
    at = utcnow()
    ev = DbtEvent(
        event_id="e1",
        event_type="job.run.completed",
        timestamp=at,
        account_id="1",
        job_id="1",
        run_id="e1",
        run_status_code=10,
    )
    with store.transaction() as conn:
        [recorded] = write_batch(conn, [Submission(b"{}", at, ev, match(RULES, ev))], utcnow())
    return recorded.job_ids[0]


def claim_at_once(queues: list[RefreshQueue]) -> dict[str, list[ClaimedJob]]:
    """Each queue claims in its own thread, all released together; what each got."""
    barrier = threading.Barrier(len(queues))

    def claim(queue: RefreshQueue) -> list[ClaimedJob]:
        barrier.wait(timeout=30)
        return queue.claim(10)

    with ThreadPoolExecutor(len(queues)) as pool:
        futures = {q.worker_id: pool.submit(claim, q) for q in queues}
        return {worker: f.result(timeout=60) for worker, f in futures.items()}


def lapse_lease(store: Store, job_id: int) -> None:
    """The holder's lease runs out (as if it had stalled past `worker.lease_seconds`)."""
    with store.session() as session:
        session.execute(
            update(RefreshJob)
            .where(RefreshJob.id == job_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )


def test_one_of_two_workers_claiming_at_once_gets_the_job(store: Store) -> None:
    job_id = record(store)
    queues = [RefreshQueue(store, "worker-a"), RefreshQueue(store, "worker-b")]

    got = claim_at_once(queues)

    assert sorted(got) == ["worker-a", "worker-b"]
    winners = {worker: jobs for worker, jobs in got.items() if jobs}
    assert len(winners) == 1, got
    [(winner, [job])] = winners.items()
    assert (job.id, job.state, job.attempts) == (job_id, JobState.SENDING, 1)
    row = store.get_job(job_id)
    assert row is not None
    assert (row.claimed_by, row.attempts) == (winner, 1)


def test_after_its_lease_lapses_the_other_worker_takes_the_job_and_the_first_changes_nothing(
    store: Store,
) -> None:
    job_id = record(store)
    first, second = RefreshQueue(store, "worker-a"), RefreshQueue(store, "worker-b")
    [stale] = first.claim(10)
    assert second.claim(10) == []  # held: not due for anyone else

    lapse_lease(store, job_id)
    [taken] = second.claim(10)
    assert (taken.id, taken.resumed) == (job_id, True)
    first.sent(stale, "tableau-job-stale", "luid-1", first_poll=0.0)
    first.finished(stale, 0, None, succeeded=True)

    row = store.get_job(job_id)
    assert row is not None
    assert (row.state, row.claimed_by, row.tableau_job_id, row.finished_at) == (
        JobState.SENDING,
        "worker-b",
        None,
        None,
    )
    assert [a.outcome for a in row.attempt_log] == ["interrupted"]  # the second's takeover
    second.sent(taken, "tableau-job-1", "luid-1", first_poll=60.0)
    row = store.get_job(job_id)
    assert row is not None
    assert (row.state, row.tableau_job_id) == (JobState.FOLLOWING, "tableau-job-1")
