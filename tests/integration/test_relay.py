"""The relay end to end: signed events in, refreshes out, over real HTTP on both sides.

The relay runs under uvicorn with its worker; Tableau is the emulator; the
store is a SQLite file. Each test posts dbt Cloud events and checks what
Tableau received and what the store recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tableauserverclient as TSC

from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.emulator import Emulator
from dbt_tableau_relay.queue import FINAL_STATES
from dbt_tableau_relay.samples import post_event, sample_event
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.store import RefreshJob, Store

SECRET = "relay-test-secret"
PAT_NAME, PAT_SECRET = "relay-pat", "relay-pat-secret"
ADMIN = ("admin", "admin-password")
EXEC = "Sales/Executive Overview"

RULES = [
    {"name": "sales", "on": {"job_id": 101}, "refresh": [{"workbook": EXEC}]},
    {
        "name": "finance",
        "on": {"job_id": [202, "203"]},
        "refresh": [{"datasource": "Finance/Revenue"}, {"workbook": "Finance/Executive Overview"}],
    },
    {
        "name": "finance-again",
        "on": {"job_id": 202},
        "refresh": [{"datasource": "Finance/Revenue"}],
    },
    {"name": "ledger", "on": {"job_id": 303}, "refresh": [{"datasource": "Finance/Legacy Ledger"}]},
    {"name": "live", "on": {"job_id": 404}, "refresh": [{"datasource": "Sales/Live Inventory"}]},
    {
        "name": "on-error",
        "on": {"event": "job.run.errored", "status": "error", "job_id": 505},
        "refresh": [{"workbook": "Marketing/Campaign Performance"}],
    },
]


@dataclass
class Relay:
    url: str
    tableau: Emulator
    store: Store

    def post(self, body: bytes) -> dict[str, Any]:
        answer = post_event(f"{self.url}/webhooks/dbt", body, SECRET)
        return {**answer.json(), "http": answer.status_code}

    def jobs(self) -> list[RefreshJob]:
        return sorted(self.store.list_jobs(limit=500), key=lambda j: j.id)

    def settled_jobs(self, timeout: float = 30.0) -> list[RefreshJob]:
        """Every job, once each has reached a final state."""
        wait_until(
            lambda: self.jobs() and all(j.state in FINAL_STATES for j in self.jobs()), timeout
        )
        return self.jobs()


def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def relay_settings(tableau_url: str, database_url: str, **worker: object) -> Settings:
    return Settings.model_validate(
        {
            "database_url": database_url,
            "dbt": {"webhook_secrets": [SECRET]},
            "tableau": {
                "server_url": tableau_url,
                "site": "marketing",
                "token_name": PAT_NAME,
                "token_secret": PAT_SECRET,
                "request_timeout": 2.0,
            },
            "rules": RULES,
            "worker": {
                "poll_interval": 0.1,
                "retry_base_seconds": 0.05,
                "busy_retry_seconds": 0.3,
                "max_attempts": 4,
            }
            | worker,
        }
    )


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    stack: list[Any] = []

    def start(job_duration: float = 0.3, database_url: str = "", **worker: object) -> Relay:
        tableau = Emulator(
            site="marketing",
            pat_name=PAT_NAME,
            pat_secret=PAT_SECRET,
            job_duration=job_duration,
            users={ADMIN[0]: ADMIN[1]},
        )
        tableau.start()
        stack.append(tableau)
        database_url = database_url or f"sqlite:///{tmp_path / 'relay.db'}"
        settings = relay_settings(tableau.url, database_url, **worker)
        server = serve_in_thread(relay_app(settings))
        running = server.__enter__()
        stack.append(server)
        store = Store(settings.database_url)
        stack.append(store)
        return Relay(running.url, tableau, store)

    yield start
    for thing in reversed(stack):
        if isinstance(thing, Store):
            thing.dispose()
        elif isinstance(thing, Emulator):
            thing.stop()
        else:
            thing.__exit__(None, None, None)


@pytest.fixture
def relay(relay_factory: Callable[..., Relay]) -> Relay:
    return relay_factory()


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
