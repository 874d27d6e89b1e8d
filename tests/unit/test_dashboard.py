"""The dashboard's rendering, from a snapshot built in memory: escaping, states, replay buttons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbt_tableau_relay.dashboard import Snapshot, ago, render_message, render_page
from dbt_tableau_relay.store import Event, RefreshJob

T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'


def job(job_id: int, state: str, **fields: Any) -> RefreshJob:
    values: dict[str, Any] = {
        "id": job_id,
        "target_kind": "workbook",
        "target_by": "path",
        "target_ref": "Sales/Executive Overview",
        "target_key": "workbook:path:Sales/Executive Overview",
        "rule_name": "sales",
        "state": state,
        "attempts": 1,
        "created_at": T0,
        "last_event_at": T0,
    }
    return RefreshJob(**(values | fields))


def event(pk: int, **fields: Any) -> Event:
    values: dict[str, Any] = {
        "id": pk,
        "event_id": "wev_1",
        "event_type": "job.run.completed",
        "job_id": "101",
        "run_id": "7",
        "outcome": "queued",
        "received_at": T0,
        "refreshes": 1,
    }
    return Event(**(values | fields))


def snap(jobs: list[RefreshJob], events: list[Event] = (), **fields: Any) -> Snapshot:  # type: ignore[assignment]
    counts = {s: sum(j.state == s for j in jobs) for s in ("succeeded", "failed", "dead")}
    return Snapshot(counts, latest=jobs, jobs=jobs, events=list(events), **fields)


def test_every_stored_value_is_escaped() -> None:
    hostile = job(1, "failed", target_ref=HOSTILE, rule_name=HOSTILE, error=HOSTILE)
    page = render_page(snap([hostile], [event(1, event_id=HOSTILE, run_id=HOSTILE)]))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_failed_and_dead_jobs_are_marked_and_offer_a_replay() -> None:
    page = render_page(snap([job(1, "succeeded"), job(2, "failed"), job(3, "dead")]))
    assert 'class="r-failed"' in page
    assert 'class="r-dead"' in page
    assert 'action="jobs/2/replay"' in page
    assert 'action="jobs/3/replay"' in page
    assert 'action="jobs/1/replay"' not in page


def test_a_replayed_job_names_its_replay_instead_of_a_button() -> None:
    page = render_page(snap([job(2, "failed", replayed_as=5), job(5, "queued")]))
    assert 'action="jobs/2/replay"' not in page
    assert 'replayed as <a href="#job-5">#5</a>' in page


@pytest.mark.parametrize(
    ("states", "banner"),
    [
        (["succeeded"], "Every item's newest refresh succeeded"),
        (["failed"], "1 item not refreshed: Sales/Executive Overview"),
        (["following"], "1 refresh in progress"),
        ([], "No refresh yet"),
    ],
)
def test_the_banner_answers_is_everything_refreshed(states: list[str], banner: str) -> None:
    page = render_page(snap([job(n, s) for n, s in enumerate(states, 1)]))
    assert banner in page


def test_the_page_reloads_itself() -> None:
    assert '<meta http-equiv="refresh" content="5; url=./">' in render_page(snap([]))
    assert "http-equiv" not in render_message("no")


def test_an_events_refreshes_link_to_their_jobs() -> None:
    page = render_page(snap([job(4, "failed")], [event(9)], jobs_of_event={9: [(4, "failed")]}))
    assert '<a href="#job-4" class="s-failed">#4 failed</a>' in page


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s ago"), (125, "2 min ago"), (7300, "2 h ago"), (90000, "1 d ago")]
)
def test_ages(seconds: int, text: str) -> None:
    assert ago(T0, T0 + timedelta(seconds=seconds)) == text
