"""Tableau misbehaving while events stream in: every refresh still ends succeeded.

The relay runs under uvicorn with its worker (fixtures from test_relay), the
emulator injects each fault, and a stream of events for several items goes
through it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness import Relay, wait_until

from dbt_tableau_relay.samples import sample_event

pytestmark = pytest.mark.slow

JOBS = (101, 202, 505)  # four items between them


def stream(relay: Relay, count: int = 12) -> None:
    for n in range(count):
        job_id = JOBS[n % len(JOBS)]
        kind = "errored" if job_id == 505 else "completed"
        answer = relay.post(sample_event(kind, job_id=job_id))  # each a run of its own
        assert answer["http"] == 202, answer


def assert_all_succeeded(relay: Relay, timeout: float = 60.0) -> None:
    jobs = relay.settled_jobs(timeout)
    assert {j.state for j in jobs} <= {"succeeded", "merged"}, [
        (j.id, j.state, j.error) for j in jobs
    ]
    assert {j.target_ref for j in jobs if j.state == "succeeded"} == {
        "Sales/Executive Overview",
        "Finance/Revenue",
        "Finance/Executive Overview",
        "Marketing/Campaign Performance",
    }


def test_an_outage_of_503s_is_ridden_out(relay_factory: Callable[..., Relay]) -> None:
    relay = relay_factory(max_attempts=30, retry_max_seconds=1.0)
    relay.tableau.faults.fail(seconds=5, status=503)
    stream(relay)
    assert_all_succeeded(relay)
    assert any(r.status == 503 for r in relay.tableau.requests)


def test_html_429_retry_after_is_honoured(relay_factory: Callable[..., Relay]) -> None:
    """Retry-After pauses every call to Tableau, not only the one refused."""
    relay = relay_factory()
    relay.tableau.faults.rate_limit(count=3, retry_after=1.0)
    stream(relay, count=3)
    assert_all_succeeded(relay)
    calls = [r for r in relay.tableau.requests if r.path.startswith("/api/")]
    limited = [n for n, r in enumerate(calls) if r.status == 429]
    assert len(limited) == 3
    for n in limited:
        assert calls[n + 1].at - calls[n].at >= 0.95, calls[n : n + 2]


def test_sessions_invalidated_mid_stream_cost_one_sign_in(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory()
    stream(relay, count=3)
    wait_until(lambda: len(relay.tableau.refresh_posts()) >= 2)
    relay.tableau.invalidate_sessions()
    stream(relay, count=6)
    assert_all_succeeded(relay)
    assert len(relay.tableau.sign_ins()) == 2


def test_a_slow_tableau_does_not_slow_the_webhook(relay_factory: Callable[..., Relay]) -> None:
    relay = relay_factory()
    relay.tableau.faults.latency = 1.5
    stream(relay)  # every delivery answered 202 while each Tableau call takes 1.5 s
    assert_all_succeeded(relay, timeout=90)


def test_dropped_connections_are_retried(relay_factory: Callable[..., Relay]) -> None:
    relay = relay_factory()
    relay.tableau.faults.drop(count=4)
    stream(relay)
    assert_all_succeeded(relay)


def test_a_refresh_queued_by_a_request_that_then_failed_is_not_lost(
    relay_factory: Callable[..., Relay],
) -> None:
    """Tableau queued the refresh but the answer was lost (a 5xx after processing)."""
    relay = relay_factory()
    relay.tableau.faults.fail(count=1, status=502, processed=True)
    stream(relay, count=1)
    assert_all_succeeded_for(relay, "Sales/Executive Overview")


def assert_all_succeeded_for(relay: Relay, target: str) -> None:
    [job] = [j for j in relay.settled_jobs() if j.state != "merged"]
    assert (job.target_ref, job.state) == (target, "succeeded")
