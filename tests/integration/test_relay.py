"""The relay end to end: signed events in, refreshes out, over real HTTP on both sides.

The relay runs under uvicorn with its worker; Tableau is the emulator; the
store is a SQLite file. Each test posts dbt Cloud events and checks what
Tableau received and what the store recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import tableauserverclient as TSC
from harness import ADMIN, EXEC, Relay, wait_until
from sqlalchemy import select

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.polling import polls_until
from dbt_tableau_relay.samples import sample_event
from dbt_tableau_relay.store import Event, RefreshJob, RefreshJobEvent, Store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def test_a_successful_run_refreshes_its_workbook_to_tableaus_verdict(relay: Relay) -> None:
    answer = relay.post(sample_event("completed", job_id=101))
    assert answer["http"] == 202
    assert answer["refreshes_queued"] == 1
    [job] = relay.settled_jobs()
    assert job.state == "succeeded"
    assert job.finish_code == 0
    assert job.item_luid == relay.tableau.luid("workbook", EXEC)
    emulated = relay.tableau.job(job.tableau_job_id or "")
    assert emulated is not None
    assert emulated.finish_code == 0
    assert len(relay.tableau.refresh_posts()) == 1
    detail = relay.store.get_job(job.id)
    assert detail is not None
    assert [a.outcome for a in detail.attempt_log] == ["accepted", "succeeded"]


def test_targets_of_one_event_are_deduplicated_across_rules(relay: Relay) -> None:
    answer = relay.post(sample_event("completed", job_id=202))
    assert answer["refreshes_queued"] == 2
    jobs = relay.settled_jobs()
    assert sorted(j.target_ref for j in jobs) == ["Finance/Executive Overview", "Finance/Revenue"]
    assert all(j.state == "succeeded" for j in jobs)
    assert len(relay.tableau.refresh_posts()) == 2


def test_a_repeated_event_creates_nothing(relay: Relay) -> None:
    body = sample_event("completed", job_id=101)
    assert relay.post(body)["http"] == 202
    again = relay.post(body)
    assert again["http"] == 200
    assert again.get("refreshes_queued", 0) == 0
    relay.settled_jobs()
    assert len(relay.tableau.refresh_posts()) == 1


def test_started_event_and_unmatched_job_are_ignored(relay: Relay) -> None:
    assert relay.post(sample_event("started", job_id=101))["http"] == 200
    assert relay.post(sample_event("completed", job_id=999))["http"] == 200
    assert relay.post(sample_event("completed", job_id=101, run_status_code=20))["http"] == 200
    time.sleep(0.5)
    assert relay.jobs() == []
    assert relay.tableau.refresh_posts() == []


def test_errored_event_matches_an_error_rule(relay: Relay) -> None:
    answer = relay.post(sample_event("errored", job_id=505))
    assert answer["refreshes_queued"] == 1
    [job] = relay.settled_jobs()
    assert (job.target_ref, job.state) == ("Marketing/Campaign Performance", "succeeded")


def test_a_refresh_that_fails_in_tableau_keeps_its_notes(relay: Relay) -> None:
    relay.post(sample_event("completed", job_id=303))
    [job] = relay.settled_jobs()
    assert job.state == "failed"
    assert job.finish_code == 1
    assert "Login failed" in (job.error or "")


def test_a_permanent_error_fails_at_once_with_tableaus_code(relay: Relay) -> None:
    relay.post(sample_event("completed", job_id=404))
    [job] = relay.settled_jobs()
    assert job.state == "failed"
    assert job.error_code == "409090"
    assert len(relay.tableau.refresh_posts()) == 1


def test_5xx_then_success(relay: Relay) -> None:
    relay.tableau.faults.fail(count=2, status=503)
    relay.post(sample_event("completed", job_id=101))
    [job] = relay.settled_jobs()
    assert job.state == "succeeded"
    detail = relay.store.get_job(job.id)
    assert detail is not None
    assert "transient" in [a.outcome for a in detail.attempt_log]


def test_html_429_then_success(relay: Relay) -> None:
    relay.tableau.faults.rate_limit(count=1, retry_after=0.2)
    relay.post(sample_event("completed", job_id=101))
    [job] = relay.settled_jobs()
    assert job.state == "succeeded"


def test_exhausted_retries_dead_letter_the_job(relay: Relay) -> None:
    relay.tableau.faults.fail(seconds=30, status=503)
    relay.post(sample_event("completed", job_id=101))
    [job] = relay.settled_jobs()
    assert job.state == "dead"
    assert (job.error_code or "").startswith("503")
    relay.tableau.faults.clear()


def test_409093_is_followed_by_a_refresh_started_after_the_event(
    relay_factory: Callable[..., Relay],
) -> None:
    """A refresh already running in Tableau may read stale data: the relay sends its own after."""
    relay = relay_factory(job_duration=1.0)
    luid = relay.tableau.luid("workbook", EXEC)
    someone_elses = _refresh_as_someone_else(relay.tableau, luid)
    relay.post(sample_event("completed", job_id=101))
    [job] = relay.settled_jobs(timeout=30)
    assert job.state == "succeeded"
    assert job.tableau_job_id != someone_elses
    statuses = [r.status for r in relay.tableau.refresh_posts(luid)]
    assert statuses[0] == 202  # someone else's
    assert 409 in statuses  # the relay met it...
    assert statuses[-1] == 202  # ...and sent its own once it was over
    ours = relay.tableau.job(job.tableau_job_id or "")
    assert ours is not None
    assert job.sent_at is not None
    assert job.sent_at >= job.last_event_at


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_burst_waits_for_the_relays_own_refresh_instead_of_meeting_409093(
    relay_factory: Callable[..., Relay], request: pytest.FixtureRequest, backend: str
) -> None:
    """One event, a burst of 60 while its refresh runs, a late one while the second runs.

    Refreshes run until the test ends them in Tableau, so every step is a
    condition, not a moment. The tight bound is 3 refreshes: the first
    event's, the burst's (which waits for the first to end), and the late
    event's (it arrived after the second was sent, so only a third refresh
    starts after it). The relay never meets 409093 from its own refresh.
    """
    database_url = request.getfixturevalue("postgres_url") if backend == "postgres" else ""
    relay = relay_factory(job_duration=3600, database_url=database_url)
    bodies = [sample_event("completed", job_id=101, run_id=n) for n in range(62)]
    assert relay.post(bodies[0])["http"] == 202
    first = _sent(relay, 1)
    with ThreadPoolExecutor(10) as pool:
        assert all(a["http"] == 202 for a in pool.map(relay.post, bodies[1:61]))
    [burst] = relay.store.list_jobs(state="queued")  # waiting for the first refresh to end
    relay.tableau.complete_job(first.tableau_job_id or "")
    second = _sent(relay, 2)
    assert second.id == burst.id
    assert relay.post(bodies[61])["http"] == 202  # the late event
    relay.tableau.complete_job(second.tableau_job_id or "")
    relay.tableau.complete_job(_sent(relay, 3).tableau_job_id or "")
    jobs = relay.settled_jobs()

    luid = relay.tableau.luid("workbook", EXEC)
    assert [r.status for r in relay.tableau.refresh_posts(luid)] == [202, 202, 202]
    assert [j.state for j in jobs] == ["succeeded"] * 3
    assert _events_not_served_by_a_later_refresh(relay.store) == []


def test_a_short_refresh_is_followed_with_few_polls(relay_factory: Callable[..., Relay]) -> None:
    relay = relay_factory(job_duration=3.0)
    relay.post(sample_event("completed", job_id=101))
    [job] = relay.settled_jobs()
    assert job.state == "succeeded"
    polls = [
        r
        for r in relay.tableau.requests
        if r.method == "GET" and r.path.lower().endswith(f"/jobs/{job.tableau_job_id}")
    ]
    # Polls come when due or a little later, never sooner: at most the schedule's
    # count (2: after 1 s and 5 s; polling a quarter of the age from 0.5 s took 6).
    assert 1 <= len(polls) <= polls_until(3.0)[0]


def _sent(relay: Relay, count: int) -> RefreshJob:
    """The `count`-th job to have been sent, once it has been."""
    wait_until(lambda: len([j for j in relay.jobs() if j.tableau_job_id]) >= count)
    return [j for j in relay.jobs() if j.tableau_job_id][count - 1]


def _events_not_served_by_a_later_refresh(store: Store) -> list[str]:
    """Events without a succeeded refresh job, linked to them, that was sent after they arrived."""
    query = (
        select(Event.event_id, Event.received_at, RefreshJob.state, RefreshJob.sent_at)
        .join(RefreshJobEvent, RefreshJobEvent.event_pk == Event.id)
        .join(RefreshJob, RefreshJob.id == RefreshJobEvent.refresh_job_id)
    )
    with store.session(readonly=True) as session:
        rows = session.execute(query).all()
        events = set(session.scalars(select(Event.event_id).where(Event.outcome == "queued")))
    served = {e for e, at, state, sent in rows if state == "succeeded" and sent and sent >= at}
    return sorted(e for e in events - served if e)


def _refresh_as_someone_else(tableau: Emulator, luid: str) -> str:
    """A Tableau user (or schedule) starts a refresh of the item."""
    server = TSC.Server(tableau.url, use_server_version=True)
    server.auth.sign_in(TSC.TableauAuth(*ADMIN, site_id="marketing"))
    return str(server.workbooks.refresh(luid).id)


@pytest.mark.postgres
def test_on_postgresql_a_run_is_refreshed(
    relay_factory: Callable[..., Relay], postgres_url: str
) -> None:
    relay = relay_factory(database_url=postgres_url)
    assert relay.post(sample_event("completed", job_id=202))["http"] == 202
    jobs = relay.settled_jobs()
    assert [j.state for j in jobs] == ["succeeded", "succeeded"]


def test_a_refresh_still_running_after_the_follow_timeout_fails(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory(job_duration=60, follow_timeout=1.0)
    relay.post(sample_event("completed", job_id=101))
    [job] = relay.settled_jobs()
    assert job.state == "failed"
    assert "still running" in (job.error or "")


def test_a_failed_poll_is_retried_not_fatal(relay_factory: Callable[..., Relay]) -> None:
    relay = relay_factory(job_duration=1.0)
    relay.post(sample_event("completed", job_id=101))
    wait_until(lambda: any(j.state == "following" for j in relay.jobs()))
    relay.tableau.faults.fail(count=2, status=503)
    [job] = relay.settled_jobs()
    assert job.state == "succeeded"
    assert any(r.status == 503 and "/jobs/" in r.path for r in relay.tableau.requests)
