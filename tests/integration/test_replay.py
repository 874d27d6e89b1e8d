"""`RefreshQueue.replay` against real databases: SQLite files and PostgreSQL.

Events and jobs are written as the recorder writes them; a job's end is then
set directly, as the worker would leave it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from dbt_tableau_relay.config import Rule
from dbt_tableau_relay.errors import NotReplayableError, UnknownJobError
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.queue import RefreshQueue
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.rules import match
from dbt_tableau_relay.store import RefreshJob, Store

T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
RULE = Rule.model_validate(
    {"name": "ledger", "incremental": True, "refresh": [{"datasource": "Finance/Ledger"}]}
)


@pytest.fixture
def queue(store: Store) -> RefreshQueue:
    return RefreshQueue(store, "test")


def record(queue: RefreshQueue, event_id: str, at: datetime) -> int:
    """An event for the ledger, recorded; the id of the queued job it made or joined."""
    ev = DbtEvent(
        event_id=event_id,
        event_type="job.run.completed",
        timestamp=at,
        account_id="1",
        job_id="303",
        run_id=event_id,  # a run of its own
        run_status_code=10,
    )
    sub = Submission(b"{}", at, ev, match([RULE], ev))
    with queue.store.transaction() as conn:
        [recorded] = write_batch(conn, [sub], at)
    return recorded.job_ids[0]


def end(queue: RefreshQueue, job_id: int, state: str, **values: Any) -> None:
    """Leave the job as the worker would have: sent, and ended in `state`."""
    with queue.store.session() as session:
        session.execute(
            update(RefreshJob)
            .where(RefreshJob.id == job_id)
            .values(state=state, attempts=3, error="Tableau said no", **values)
        )


def job(queue: RefreshQueue, job_id: int) -> RefreshJob:
    found = queue.store.get_job(job_id)
    assert found is not None
    return found


def test_a_failed_job_is_replayed_as_a_new_queued_job_for_the_same_item(
    queue: RefreshQueue,
) -> None:
    old_id = record(queue, "wev_1", T0)
    end(queue, old_id, "failed", finish_code=1)
    new_id = queue.replay(old_id)
    assert new_id != old_id
    old, new = job(queue, old_id), job(queue, new_id)
    assert new.state == "queued"
    assert (new.target_key, new.rule_name, new.incremental, new.wait) == (
        old.target_key,
        "ledger",
        True,
        True,
    )
    assert new.last_event_at == old.last_event_at == T0
    assert [e.event_id for e in new.events] == ["wev_1"]
    assert new.attempts == 0
    assert new.error is None


def test_the_old_job_keeps_its_history_and_names_its_replay(queue: RefreshQueue) -> None:
    old_id = record(queue, "wev_1", T0)
    end(queue, old_id, "dead", error_code="503")
    new_id = queue.replay(old_id)
    old = job(queue, old_id)
    assert (old.state, old.error, old.error_code, old.attempts) == (
        "dead",
        "Tableau said no",
        "503",
        3,
    )
    [attempt] = old.attempt_log
    assert attempt.outcome == "replayed"
    assert attempt.message == f"replayed as refresh job {new_id}"
    assert old.replayed_as == new_id


def test_a_replay_joins_the_items_queued_job(queue: RefreshQueue) -> None:
    old_id = record(queue, "wev_1", T0)
    end(queue, old_id, "failed")
    waiting = record(queue, "wev_2", T0 + timedelta(minutes=5))
    assert queue.replay(old_id) == waiting
    joined = job(queue, waiting)
    assert sorted(e.event_id or "" for e in joined.events) == ["wev_1", "wev_2"]
    assert joined.last_event_at == T0 + timedelta(minutes=5)  # the newest event's time
    assert len(queue.store.list_jobs()) == 2


def test_replaying_twice_while_the_first_replay_waits_makes_one_job(queue: RefreshQueue) -> None:
    old_id = record(queue, "wev_1", T0)
    end(queue, old_id, "failed")
    first = queue.replay(old_id)
    assert queue.replay(old_id) == first
    assert [e.event_id for e in job(queue, first).events] == ["wev_1"]


@pytest.mark.parametrize("state", ["queued", "sending", "following", "succeeded", "merged"])
def test_only_failed_or_dead_jobs_are_replayed(queue: RefreshQueue, state: str) -> None:
    job_id = record(queue, "wev_1", T0)
    end(queue, job_id, state)
    with pytest.raises(NotReplayableError, match=f"refresh job {job_id} is {state}"):
        queue.replay(job_id)
    assert len(queue.store.list_jobs()) == 1
    assert job(queue, job_id).attempt_log == []


def test_an_unknown_job_is_named_in_the_error(queue: RefreshQueue) -> None:
    with pytest.raises(UnknownJobError, match="refresh job 42 does not exist"):
        queue.replay(42)


def test_unreplayed_lists_the_dead_jobs_never_replayed(queue: RefreshQueue) -> None:
    first = record(queue, "wev_1", T0)
    end(queue, first, "dead")
    replayed = queue.replay(first)
    end(queue, replayed, "dead")
    assert queue.unreplayed("dead") == [replayed]
    assert queue.unreplayed("failed") == []
