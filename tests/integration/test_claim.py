"""`RefreshQueue.claim` against real databases: what is due, and what waits.

Events and jobs are written as the recorder writes them; the worker's side
is played by calling the queue's transitions directly, on SQLite and on
PostgreSQL (the `store` fixture).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from dbt_tableau_relay.config import Rule
from dbt_tableau_relay.errors import TransientTableauError
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.queue import ClaimedJob, RefreshQueue
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.rules import match
from dbt_tableau_relay.store import RefreshJob, Store, utcnow

RULES = [
    Rule.model_validate({"name": "exec", "on": {"job_id": 1}, "refresh": [{"workbook": "S/Exec"}]}),
    Rule.model_validate({"name": "rev", "on": {"job_id": 2}, "refresh": [{"datasource": "F/Rev"}]}),
]


@pytest.fixture
def queue(store: Store) -> RefreshQueue:
    return RefreshQueue(store, "worker-a")


def record(store: Store, event_id: str, dbt_job: int = 1, at: datetime | None = None) -> int:
    """An event, recorded as the recorder does; the id of the queued job it made or joined."""
    at = at or utcnow()
    ev = DbtEvent(
        event_id=event_id,
        event_type="job.run.completed",
        timestamp=at,
        account_id="1",
        job_id=str(dbt_job),
        run_id=event_id,  # a run of its own: a run asks for an item's refresh once (runs.py)
        run_status_code=10,
    )
    with store.transaction() as conn:
        [recorded] = write_batch(conn, [Submission(b"{}", at, ev, match(RULES, ev))], utcnow())
    return recorded.job_ids[0]


def due_now(store: Store, job_id: int) -> None:
    """A followed job's next poll has come."""
    with store.session() as session:
        session.execute(
            update(RefreshJob)
            .where(RefreshJob.id == job_id)
            .values(not_before=utcnow() - timedelta(seconds=1))
        )


def claim_one(queue: RefreshQueue) -> ClaimedJob:
    [job] = queue.claim(10)
    return job


def test_a_queued_job_waits_while_its_items_own_refresh_is_being_sent(
    store: Store, queue: RefreshQueue
) -> None:
    record(store, "e1")
    assert claim_one(queue).state == "sending"
    record(store, "e2")  # a new queued job of the same item
    other = record(store, "e3", dbt_job=2)  # and one of another item

    assert [j.id for j in queue.claim(10)] == [other]  # only the other item's


def test_a_queued_job_waits_while_its_items_own_refresh_is_followed_then_is_sent(
    store: Store, queue: RefreshQueue
) -> None:
    record(store, "e1")
    first = claim_one(queue)
    queue.sent(first, "tableau-job-1", "luid-1", first_poll=0.0)
    waiting = record(store, "e2")

    [polled] = queue.claim(10)  # the followed job's poll is due; the queued one is not
    assert (polled.id, polled.state) == (first.id, "following")
    queue.poll_later(polled, 0.0)
    assert [j.id for j in queue.claim(10)] == [first.id]

    queue.finished(first, 0, None, succeeded=True)
    after = claim_one(queue)
    assert (after.id, after.state) == (waiting, "sending")
    assert after.claimed_at >= after.last_event_at  # still sent after its newest event


@pytest.mark.parametrize("end", ["failed", "dead"])
def test_any_end_of_the_items_refresh_releases_the_waiting_job(
    store: Store, queue: RefreshQueue, end: str
) -> None:
    record(store, "e1")
    first = claim_one(queue)
    waiting = record(store, "e2")
    assert queue.claim(10) == []

    (queue.fail if end == "failed" else queue.dead)(first, "Tableau said no")

    assert claim_one(queue).id == waiting


def test_a_crashed_send_holds_the_waiting_job_and_is_claimed_again_as_resumed(
    store: Store,
) -> None:
    dead = RefreshQueue(store, "worker-dead", lease=0.001)
    record(store, "e1")
    crashed = claim_one(dead)
    assert not crashed.resumed
    waiting = record(store, "e2")
    live = RefreshQueue(store, "worker-live")

    again = claim_one(live)  # the expired send only, not the item's queued job

    assert (again.id, again.state, again.resumed) == (crashed.id, "sending", True)
    assert again.attempts == crashed.attempts + 1
    live.sent(again, "tableau-job-1", "luid-1", first_poll=60.0, outcome="adopted")
    assert live.claim(10) == []  # adopted, so followed: the queued job still waits
    assert [j.id for j in store.list_jobs(state="queued")] == [waiting]
    detail = store.get_job(crashed.id)
    assert detail is not None
    assert [a.outcome for a in detail.attempt_log] == [
        "interrupted",
        "adopted",
    ]  # the crash, then the adoption


def test_a_held_resumed_job_stays_sending_and_is_resumed_again(store: Store) -> None:
    dead = RefreshQueue(store, "worker-dead", lease=0.001)
    record(store, "e1")
    claim_one(dead)
    live = RefreshQueue(store, "worker-live")
    resumed = claim_one(live)

    live.hold(resumed, 0.0, TransientTableauError("Tableau 503"), "transient")

    again = claim_one(RefreshQueue(store, "worker-third"))
    assert (again.id, again.state, again.resumed) == (resumed.id, "sending", True)
    assert live.transient_failures(again) == 2  # the first crash and the 503, not the hold


def test_unrecorded_keeps_only_tableau_jobs_no_refresh_job_recorded(
    store: Store, queue: RefreshQueue
) -> None:
    record(store, "e1")
    queue.sent(claim_one(queue), "tableau-job-1", "luid-1", first_poll=60.0)

    assert queue.unrecorded(["tableau-job-0", "tableau-job-1", "tableau-job-2"]) == [
        "tableau-job-0",
        "tableau-job-2",
    ]
    assert queue.unrecorded([]) == []


def test_recent_durations_are_those_of_the_items_refreshes_that_tableau_finished(
    store: Store, queue: RefreshQueue
) -> None:
    record(store, "e1")
    job = claim_one(queue)
    queue.sent(job, "tableau-job-1", "luid-1", first_poll=0.0)
    queue.finished(job, 0, None, succeeded=True)
    record(store, "e2", dbt_job=2)
    queue.fail(claim_one(queue), "no")  # another item, and no verdict

    [seconds] = queue.recent_durations(job.target_key)
    assert 0 <= seconds < 60
    assert queue.recent_durations("datasource:path:F/Rev") == []
