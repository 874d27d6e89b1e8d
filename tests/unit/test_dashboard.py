"""The dashboard's rendering, from snapshots built in memory: escaping, states, links, pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbt_tableau_relay.dashboard import (
    EventsSnapshot,
    JobSnapshot,
    JobsSnapshot,
    RunSnapshot,
    Snapshot,
    ago,
    lineage_view,
    qs,
    render_events,
    render_job,
    render_jobs,
    render_message,
    render_page,
    render_run,
)
from dbt_tableau_relay.lineage.explain import to_json
from dbt_tableau_relay.lineage.model import Decision, NodeVerdict, TableauItem
from dbt_tableau_relay.reads import JobFilter, Page, item_path
from dbt_tableau_relay.runs import LineageJob
from dbt_tableau_relay.store import Attempt, Event, RefreshJob

T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
HEALTH = TableauItem("workbook", "3f1c9a52-7d2e", "Pipeline Health", "Sales")
REVENUE = TableauItem("workbook", "0c9d1e2f-3a4b", "Revenue", "Finance")


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
        "incremental": False,
        "wait": True,
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


def decision(item: TableauItem, action: str, *nodes: tuple[str, str], reason: str = "") -> Decision:
    verdicts = tuple(NodeVerdict(f"model.shop.{n}", s) for n, s in nodes)
    return Decision(item, action, verdicts, "exposures", reason)  # type: ignore[arg-type]


def lineage_job(decisions: list[Decision] | None, **fields: Any) -> LineageJob:
    explanation = None if decisions is None else json.dumps(to_json(decisions))
    values: dict[str, Any] = {
        "id": 1,
        "run_id": "7",
        "rule_name": "lineage",
        "sources": "exposures",
        "state": "done",
        "attempts": 1,
        "explanation": explanation,
        "created_at": T0,
        "finished_at": T0,
    }
    return LineageJob(**(values | fields))


def lineage_made(job_id: int, state: str, d: Decision) -> RefreshJob:
    """A refresh job as a lineage job queues it: by LUID, its decision as its explanation."""
    item = d.item
    return job(
        job_id,
        state,
        target_kind=item.kind,
        target_by="luid",
        target_ref=item.luid,
        target_key=f"{item.kind}:luid:{item.luid}",
        rule_name="lineage",
        explanation=json.dumps(to_json([d])[0]),
    )


def snap(jobs: list[RefreshJob], events: list[Event] = (), **fields: Any) -> Snapshot:  # type: ignore[assignment]
    counts = {s: sum(j.state == s for j in jobs) for s in ("succeeded", "failed", "dead")}
    return Snapshot(counts, latest=jobs, jobs=jobs, events=list(events), **fields)


def page_of(rows: list[Any], offset: int = 0, limit: int = 50, more: bool = False) -> Page[Any]:
    return Page(rows, offset, limit, more)


def run_snap(lineage: list[LineageJob], jobs: list[RefreshJob], **fields: Any) -> RunSnapshot:
    views = [lineage_view(lj, jobs) for lj in lineage]
    return RunSnapshot("7", [event(1)], views, jobs, **fields)


# -- the overview --------------------------------------------------------------


def test_every_stored_value_is_escaped() -> None:
    hostile = job(1, "failed", target_ref=HOSTILE, rule_name=HOSTILE, error=HOSTILE)
    page = render_page(snap([hostile], [event(1, event_id=HOSTILE, run_id=HOSTILE)]))
    assert "<script>" not in page
    assert ESCAPED in page


def test_failed_and_dead_jobs_are_marked_and_offer_a_replay() -> None:
    page = render_page(snap([job(1, "succeeded"), job(2, "failed"), job(3, "dead")]))
    assert 'class="r-failed"' in page
    assert 'class="r-dead"' in page
    assert 'action="/jobs/2/replay"' in page
    assert 'action="/jobs/3/replay"' in page
    assert 'action="/jobs/1/replay"' not in page


def test_a_replayed_job_names_its_replay_instead_of_a_button() -> None:
    page = render_page(snap([job(2, "failed", replayed_as=5), job(5, "queued")]))
    assert 'action="/jobs/2/replay"' not in page
    assert 'replayed as <a href="/jobs/5">#5</a>' in page


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


def test_the_overview_reloads_itself_and_the_other_pages_do_not_by_default() -> None:
    assert '<meta http-equiv="refresh" content="5; url=./">' in render_page(snap([]))
    assert "http-equiv" not in render_message("no")
    assert "http-equiv" not in render_jobs(JobsSnapshot(page_of([job(1, "queued")])))
    assert "http-equiv" not in render_events(EventsSnapshot(page_of([event(1)])))


def test_an_events_refreshes_link_to_their_jobs_and_its_run_to_the_run_page() -> None:
    page = render_page(snap([job(4, "failed")], [event(9)], jobs_of_event={9: [(4, "failed")]}))
    assert '<a href="/jobs/4" class="s-failed">#4 failed</a>' in page
    assert '<a href="/runs/7">7</a>' in page


def test_a_jobs_runs_link_to_their_run_pages() -> None:
    page = render_page(snap([job(4, "succeeded")], runs_of_job={4: ["70", "71"]}))
    assert '<a href="/runs/70">70</a> <a href="/runs/71">71</a>' in page


def test_an_item_links_to_its_history() -> None:
    page = render_page(snap([job(1, "succeeded")]))
    assert '<a href="/jobs?target=Sales%2FExecutive+Overview">Sales/Executive Overview</a>' in page


def test_a_lineage_made_job_shows_its_items_path_not_its_luid() -> None:
    made = lineage_made(3, "succeeded", decision(REVENUE, "refresh", ("orders", "success")))
    assert item_path(made) == "Finance/Revenue"
    page = render_page(snap([made]))
    assert f'title="{REVENUE.luid}">Finance/Revenue</a>' in page


def test_older_pages_are_linked_when_there_are_more_rows() -> None:
    page = render_page(snap([job(1, "queued")], [event(1)], more_jobs=True, more_events=True))
    assert 'href="/jobs?offset=1">Older' in page
    assert 'href="/events?offset=1">Older' in page
    assert "Older" not in render_page(snap([job(1, "queued")], [event(1)]))


def test_links_live_under_the_apps_root_path() -> None:
    page = render_page(snap([job(2, "failed")], [event(1)]), root="/relay")
    assert 'action="/relay/jobs/2/replay"' in page
    assert 'href="/relay/runs/7"' in page
    assert 'href="/jobs' not in page


# -- the jobs list ---------------------------------------------------------------


def test_the_filter_form_keeps_what_was_asked_and_escapes_it() -> None:
    where = JobFilter(state="failed", rule=HOSTILE, item=HOSTILE)
    page = render_jobs(JobsSnapshot(page_of([]), where))
    assert '<option value="failed" selected>failed</option>' in page
    assert f'name="rule" value="{ESCAPED}"' in page
    assert f'name="item" value="{ESCAPED}"' in page
    assert "<script>" not in page
    assert "No refresh job matches." in page


def test_a_target_filter_is_the_items_history() -> None:
    where = JobFilter(target="Finance/Revenue")
    page = render_jobs(JobsSnapshot(page_of([job(1, "failed")]), where))
    assert "History of Finance/Revenue" in page
    assert '<input type="hidden" name="target" value="Finance/Revenue">' in page


@pytest.mark.parametrize(
    ("offset", "more", "newer", "older"),
    [
        (0, False, None, None),
        (0, True, None, 20),
        (20, True, 0, 40),
        (40, False, 20, None),
        (10, False, 0, None),
    ],
)
def test_pages_link_newer_and_older_keeping_the_filter(
    offset: int, more: bool, newer: int | None, older: int | None
) -> None:
    rows = [job(1, "failed")]
    page = render_jobs(JobsSnapshot(page_of(rows, offset, 20, more), JobFilter(state="failed")))
    for label, to in (("Newer", newer), ("Older", older)):
        link = f'href="/jobs?offset={to}&amp;limit=20&amp;state=failed"'
        assert (link in page) is (to is not None), (label, page)
        assert (label in page) is (to is not None)


def test_the_events_list_is_filtered_by_dbt_job_and_paged() -> None:
    snap_ = EventsSnapshot(page_of([event(3, job_id="101")], 0, 1, more=True), job_id="101")
    page = render_events(snap_)
    assert "dbt Cloud events of dbt job 101" in page
    assert 'href="/events?offset=1&amp;limit=1&amp;job_id=101">Older' in page
    assert 'name="job_id" value="101"' in page


# -- a job's page ----------------------------------------------------------------


def test_a_jobs_page_shows_its_attempts_events_and_runs() -> None:
    failed = job(2, "failed", error=HOSTILE, error_code="finishCode 1", finish_code=1)
    failed.attempt_log = [
        Attempt(number=1, outcome="accepted", started_at=T0, tableau_job_id="abcdef123456"),
        Attempt(number=1, outcome="failed", started_at=T0, finish_code=1, message=HOSTILE),
    ]
    failed.events = [event(5, run_id="70")]
    page = render_job(JobSnapshot(failed, runs=["70"]))
    assert "Refresh job #2" in page
    assert '<span class="badge s-accepted">accepted</span>' in page
    assert '<span class="mono" title="abcdef123456">abcdef12</span>' in page
    assert '<a href="/runs/70">70</a>' in page
    assert 'action="/jobs/2/replay"' in page
    assert "<script>" not in page
    assert ESCAPED in page


def test_a_lineage_made_jobs_page_says_why() -> None:
    d = decision(REVENUE, "refresh", ("orders", "success"), reason=HOSTILE)
    made = lineage_made(3, "queued", d)
    page = render_job(JobSnapshot(made, decision=d))
    assert "Why: the lineage decision" in page
    assert '<span class="node-success" title="model.shop.orders">orders: success</span>' in page
    assert ESCAPED in page
    assert '<meta http-equiv="refresh" content="5">' in page  # queued: reloaded until final


def test_a_final_jobs_page_is_not_reloaded() -> None:
    assert "http-equiv" not in render_job(JobSnapshot(job(1, "succeeded")))


# -- a run's page ----------------------------------------------------------------


def test_a_runs_page_shows_each_lineage_decision_and_the_refresh_it_caused() -> None:
    refresh = decision(REVENUE, "refresh", ("orders", "success"), reason="orders was rebuilt")
    skip = decision(
        HEALTH, "skip", ("revenue_daily", "error"), ("stg_orders", "success"), reason="errored"
    )
    made = lineage_made(8, "failed", refresh)
    page = render_run(run_snap([lineage_job([refresh, skip])], [made]))
    rows = [r.split("</tr>")[0] for r in page.split('<tr class="d-')[1:]]
    assert [r.split('"', 1)[0] for r in rows] == ["refresh", "skip"]  # explain's order, by path
    assert '<span title="0c9d1e2f-3a4b">Finance/Revenue</span>' in rows[0]
    assert '<a href="/jobs/8" class="s-failed">#8 failed</a>' in rows[0]
    assert "orders was rebuilt" in rows[0]
    error = '<span class="node-error" title="model.shop.revenue_daily">revenue_daily: error</span>'
    assert error in rows[1]
    assert "stg_orders: success" in rows[1]
    assert "/jobs/8" not in rows[1]  # a skipped item has no refresh
    assert "refresh 1, skip 1" in page
    assert "dbt run 7" in page


def test_a_runs_page_escapes_hostile_names_in_decisions() -> None:
    item = TableauItem("datasource", HOSTILE, HOSTILE, HOSTILE)
    d = decision(item, "skip", (HOSTILE, "error"), reason=HOSTILE)
    page = render_run(run_snap([lineage_job([d], rule_name=HOSTILE, error=HOSTILE)], []))
    assert "<script>" not in page
    assert page.count(ESCAPED) >= 5


def test_a_runs_page_is_reloaded_while_its_lineage_or_refreshes_are_unfinished() -> None:
    done = lineage_job([])
    assert "http-equiv" not in render_run(run_snap([done], [job(1, "succeeded")]))
    assert "http-equiv" in render_run(run_snap([lineage_job(None, state="resolving")], []))
    assert "http-equiv" in render_run(run_snap([done], [job(1, "following")]))


def test_a_lineage_job_that_considered_nothing_says_so() -> None:
    assert "No Tableau item was considered." in render_run(run_snap([lineage_job([])], []))


@pytest.mark.parametrize("explanation", ["{not json", '[{"kind": "cube"}]', '{"a": 1}'])
def test_an_unreadable_explanation_is_named_not_a_server_error(explanation: str) -> None:
    page = render_run(run_snap([lineage_job(None, explanation=explanation)], []))
    assert "The stored explanation cannot be read" in page


def test_a_run_without_lineage_shows_its_events_and_refreshes() -> None:
    page = render_run(run_snap([], [job(4, "succeeded")], jobs_of_event={1: [(4, "succeeded")]}))
    assert "What lineage decided" not in page
    assert '<a href="/jobs/4" class="s-succeeded">#4 succeeded</a>' in page
    assert 'id="job-4"' in page


# -- helpers ---------------------------------------------------------------------


def test_a_query_string_leaves_out_what_has_no_value() -> None:
    assert qs(state="failed", rule=None, item="", offset=0) == "state=failed&offset=0"
    assert qs(target="a&b=c/d") == "target=a%26b%3Dc%2Fd"


def test_a_message_is_escaped() -> None:
    page = render_message(HOSTILE)
    assert ESCAPED in page
    assert "<script>" not in page


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s ago"), (125, "2 min ago"), (7300, "2 h ago"), (90000, "1 d ago")]
)
def test_ages(seconds: int, text: str) -> None:
    assert ago(T0, T0 + timedelta(seconds=seconds)) == text
