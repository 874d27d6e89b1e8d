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

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import sample_event


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


def test_a_burst_for_one_workbook_makes_at_most_two_refreshes(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory(job_duration=0.5)
    bodies = [sample_event("completed", job_id=101, run_id=n) for n in range(40)]
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(relay.post, bodies))
    assert all(a["http"] == 202 for a in answers)
    jobs = relay.settled_jobs()
    accepted = [r for r in relay.tableau.refresh_posts() if r.status == 202]
    assert len(accepted) <= 2
    assert all(j.state in ("succeeded", "merged") for j in jobs)
    last = max(j.last_event_at for j in jobs)
    assert any(j.state == "succeeded" and j.sent_at and j.sent_at >= last for j in jobs)


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


@pytest.mark.postgres
def test_on_postgresql_a_burst_makes_at_most_two_refreshes(
    relay_factory: Callable[..., Relay], postgres_url: str
) -> None:
    relay = relay_factory(job_duration=0.5, database_url=postgres_url)
    bodies = [sample_event("completed", job_id=101, run_id=n) for n in range(40)]
    with ThreadPoolExecutor(10) as pool:
        assert all(a["http"] == 202 for a in pool.map(relay.post, bodies))
    relay.settled_jobs()
    assert len([r for r in relay.tableau.refresh_posts() if r.status == 202]) <= 2


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
