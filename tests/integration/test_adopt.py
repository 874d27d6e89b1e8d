"""A send killed between Tableau's 202 and its commit: the refresh is adopted, not sent again.

The killed worker is played by a queue whose lease runs out at once and a
Tableau client that sends the refresh; its process never records the 202.
A live worker then claims the job (resumed), looks for that refresh through
Query Jobs, confirms it by the item LUID Query Job names, and follows it.
Refreshes run until the test ends them in Tableau (`complete_job`). On
SQLite and PostgreSQL (the `store` fixture).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from harness import wait_until

from dbt_tableau_relay.config import Rule, TableauSettings, Target, WorkerSettings
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.queue import RefreshQueue
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.rules import match
from dbt_tableau_relay.store import RefreshJob, Store, utcnow
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.worker import Worker

SITE, PAT_NAME, PAT_SECRET = "marketing", "adopt-pat", "adopt-pat-secret"
EXEC = Target(workbook="Sales/Executive Overview")
REVENUE = Target(datasource="Finance/Revenue")
RULES = [
    Rule.model_validate({"name": "exec", "on": {"job_id": 1}, "refresh": [EXEC]}),
    Rule.model_validate({"name": "revenue", "on": {"job_id": 2}, "refresh": [REVENUE]}),
]
DBT_JOB = {EXEC: 1, REVENUE: 2}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(site=SITE, pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=3600) as e:
        yield e


def settings(emu: Emulator) -> TableauSettings:
    return TableauSettings.model_validate(
        {
            "server_url": emu.url,
            "site": SITE,
            "token_name": PAT_NAME,
            "token_secret": PAT_SECRET,
            "request_timeout": 2.0,
        }
    )


def record(store: Store, target: Target, event_id: str, at: datetime | None = None) -> int:
    """An event for `target`, recorded as the recorder does; its queued job's id."""
    at = at or utcnow()
    ev = DbtEvent(
        event_id=event_id,
        event_type="job.run.completed",
        timestamp=at,
        account_id="1",
        job_id=str(DBT_JOB[target]),
        run_id=event_id,  # a run of its own
        run_status_code=10,
    )
    with store.transaction() as conn:
        [recorded] = write_batch(conn, [Submission(b"{}", at, ev, match(RULES, ev))], utcnow())
    return recorded.job_ids[0]


def killed_mid_send(
    store: Store, emu: Emulator, *targets: Target, sent: bool, at: datetime | None = None
) -> list[tuple[int, str | None]]:
    """Jobs claimed by a worker that died after sending them (if `sent`), before recording it.

    For each target, the id of its job and of the Tableau refresh it started, if any.
    """
    job_ids = [record(store, t, f"ev-{t}", at) for t in targets]
    claimed = RefreshQueue(store, "killed-worker", lease=0.001).claim(len(targets))
    assert sorted(c.id for c in claimed) == sorted(job_ids)
    if not sent:
        return [(job_id, None) for job_id in job_ids]
    with TableauClient(settings(emu)) as killed:
        return [
            (job_id, killed.refresh(t)[1].id) for job_id, t in zip(job_ids, targets, strict=True)
        ]


@contextmanager
def live_worker(store: Store, emu: Emulator) -> Iterator[Worker]:
    work = WorkerSettings(poll_interval=0.05, retry_base_seconds=0.05, busy_retry_seconds=0.2)
    with TableauClient(settings(emu)) as client:
        worker = Worker(store, client, work, worker_id="live-worker")
        worker.start()
        try:
            yield worker
        finally:
            worker.stop()


def job(store: Store, job_id: int) -> RefreshJob:
    found = store.get_job(job_id)
    assert found is not None
    return found


def in_state(store: Store, job_id: int, state: str) -> bool:
    return job(store, job_id).state == state


def queries(emu: Emulator, status: int | None = None) -> list[str]:
    """The `filter` of each Query Jobs call (GET .../jobs), optionally of one answer status."""
    return [
        r.query.get("filter", "")
        for r in emu.requests
        if r.method == "GET" and r.path.lower().endswith("/jobs") and status in (None, r.status)
    ]


def test_a_send_killed_before_its_commit_adopts_the_refresh_it_started(
    store: Store, emu: Emulator
) -> None:
    [(job_id, started)] = killed_mid_send(store, emu, EXEC, sent=True)
    assert started is not None

    with live_worker(store, emu):
        wait_until(lambda: in_state(store, job_id, "following"))
        emu.complete_job(started)
        wait_until(lambda: in_state(store, job_id, "succeeded"))

    done = job(store, job_id)
    assert done.tableau_job_id == started
    assert [r.status for r in emu.refresh_posts()] == [202]  # the killed worker's only
    assert [a.outcome for a in done.attempt_log] == ["interrupted", "adopted", "succeeded"]
    [lookup] = queries(emu, 200)
    assert "title:eq:Executive Overview" in lookup
    assert "jobType:eq:refresh_extracts" in lookup
    assert "createdAt:gt:" in lookup


def test_a_send_killed_before_it_reached_tableau_is_sent(store: Store, emu: Emulator) -> None:
    [(job_id, _)] = killed_mid_send(store, emu, EXEC, sent=False)

    with live_worker(store, emu):
        wait_until(lambda: in_state(store, job_id, "following"))
        [post] = emu.refresh_posts()
        emu.complete_job(job(store, job_id).tableau_job_id or "")
        wait_until(lambda: in_state(store, job_id, "succeeded"))

    assert post.status == 202
    assert len(queries(emu, 200)) == 1
    outcomes = [a.outcome for a in job(store, job_id).attempt_log]
    assert outcomes == ["interrupted", "accepted", "succeeded"]


def test_a_refresh_of_another_item_with_the_same_name_is_not_adopted(
    store: Store, emu: Emulator
) -> None:
    """Finance/Executive Overview shares the name: Query Job's item LUID tells them apart."""
    [(job_id, _)] = killed_mid_send(store, emu, EXEC, sent=False)
    with TableauClient(settings(emu)) as someone:
        _, namesake = someone.refresh(Target(workbook="Finance/Executive Overview"))

    with live_worker(store, emu):
        wait_until(lambda: in_state(store, job_id, "following"))
        emu.complete_job(job(store, job_id).tableau_job_id or "")
        wait_until(lambda: in_state(store, job_id, "succeeded"))

    assert job(store, job_id).tableau_job_id != namesake.id
    assert [r.status for r in emu.refresh_posts(emu.luid("workbook", EXEC.path or ""))] == [202]


def test_a_refresh_started_before_the_jobs_newest_event_is_not_adopted(
    store: Store, emu: Emulator
) -> None:
    with TableauClient(settings(emu)) as someone:
        _, earlier = someone.refresh(EXEC)
    emu.complete_job(earlier.id)
    [(job_id, _)] = killed_mid_send(
        store, emu, EXEC, sent=False, at=utcnow() + timedelta(minutes=1)
    )

    with live_worker(store, emu):
        wait_until(lambda: in_state(store, job_id, "following"))
        emu.complete_job(job(store, job_id).tableau_job_id or "")
        wait_until(lambda: in_state(store, job_id, "succeeded"))

    assert job(store, job_id).tableau_job_id != earlier.id
    assert [r.status for r in emu.refresh_posts()] == [202, 202]


def test_a_failed_look_keeps_the_job_resumed_and_the_next_attempt_adopts(
    store: Store, emu: Emulator
) -> None:
    [(job_id, started)] = killed_mid_send(store, emu, EXEC, sent=True)
    emu.faults.fail(count=1, status=503)  # the live worker's first call

    with live_worker(store, emu):
        wait_until(lambda: in_state(store, job_id, "following"))
        emu.complete_job(started or "")
        wait_until(lambda: in_state(store, job_id, "succeeded"))

    done = job(store, job_id)
    assert done.tableau_job_id == started
    outcomes = [a.outcome for a in done.attempt_log]
    assert outcomes == ["interrupted", "transient", "adopted", "succeeded"]  # held: no crash
    assert len(emu.refresh_posts()) == 1


def test_a_pat_that_may_not_list_jobs_sends_again_and_says_so_once(
    store: Store, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dbt_tableau_relay.worker")
    emu.pat_admin = False
    killed = killed_mid_send(store, emu, EXEC, REVENUE, sent=True)
    for _, started in killed:
        emu.complete_job(started or "")

    with live_worker(store, emu):
        for job_id, _ in killed:
            wait_until(lambda j=job_id: in_state(store, j, "following"))
            emu.complete_job(job(store, job_id).tableau_job_id or "")
            wait_until(lambda j=job_id: in_state(store, j, "succeeded"))

    assert [r.status for r in emu.refresh_posts()] == [202] * 4  # two sent twice: duplicates
    assert len(queries(emu, 403)) == 2
    assert caplog.messages.count("refresh.adopt_unavailable") == 1
    for job_id, started in killed:
        assert job(store, job_id).tableau_job_id != started
