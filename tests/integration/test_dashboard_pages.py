"""The dashboard's pages and the API's filters over real HTTP: runs, jobs, filters, pages.

The relay runs under uvicorn with its worker against the emulator, on a SQLite
file. A lineage-driven run is written into the store as the worker leaves it
(`seed_lineage_run`); the other runs are posted as dbt Cloud posts them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from admin_harness import LEGACY_LEDGER, TOKEN, admin_relay, client, emulator, seed_lineage_run
from harness import EXEC, Relay

from dbt_tableau_relay.dashboard import HEADERS
from dbt_tableau_relay.samples import sample_event
from dbt_tableau_relay.store import RefreshJob, utcnow


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    with emulator() as tableau, admin_relay(tableau, f"sqlite:///{tmp_path / 'relay.db'}") as relay:
        yield relay


@pytest.fixture
def api(relay: Relay) -> Iterator[httpx.Client]:
    with client(relay) as api:
        yield api


def three_runs(relay: Relay) -> list[RefreshJob]:
    """dbt jobs 101 (one item), 202 (two) and 303 (one, which fails), as runs 1, 2 and 3."""
    for run_id, job_id in enumerate((101, 202, 303), 1):
        relay.post(sample_event("completed", job_id=job_id, run_id=run_id))
    return relay.settled_jobs()


def shown_jobs(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="job-(\d+)"', html)]


def add_jobs(relay: Relay, count: int) -> list[int]:
    """`count` finished jobs straight into the store, oldest first."""
    now = utcnow()
    with relay.store.session() as session:
        jobs = [
            RefreshJob(
                target_kind="workbook",
                target_by="path",
                target_ref=f"Sales/Workbook {n}",
                target_key=f"workbook:path:Sales/Workbook {n}",
                rule_name="bulk",
                incremental=False,
                wait=True,
                state="succeeded",
                attempts=1,
                not_before=now,
                created_at=now,
                updated_at=now,
                last_event_at=now,
            )
            for n in range(count)
        ]
        session.add_all(jobs)
        session.flush()
        return [j.id for j in jobs]


# -- a run's page ------------------------------------------------------------------


def test_a_runs_page_shows_its_lineage_decisions_and_the_refresh_they_made(
    relay: Relay, api: httpx.Client
) -> None:
    seeded = seed_lineage_run(relay.store)
    answer = api.get(f"/runs/{seeded.run_id}")
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
    html = answer.text
    refresh, skip = (r.split("</tr>")[0] for r in html.split('<tr class="d-')[1:])
    assert "Finance/Revenue" in refresh
    assert "orders: success" in refresh
    assert f'href="/jobs/{seeded.refresh_job_id}" class="s-failed"' in refresh
    assert "Sales/Pipeline Health" in skip
    assert "revenue_daily: error" in skip
    assert "a node it depends on errored: revenue_daily" in skip
    assert "<script" not in html


def test_a_runs_page_lists_the_refreshes_a_webhook_caused(relay: Relay, api: httpx.Client) -> None:
    relay.post(sample_event("completed", job_id=202, run_id=4242))
    jobs = relay.settled_jobs()
    html = api.get("/runs/4242").text
    assert sorted(shown_jobs(html)) == [j.id for j in jobs]
    assert html.count('<span class="badge s-succeeded">succeeded</span>') == 2
    assert "What lineage decided" not in html
    assert "http-equiv" not in html  # every refresh is final: nothing to wait for


def test_an_unknown_run_is_a_404_on_the_page_and_in_the_api(api: httpx.Client) -> None:
    page = api.get("/runs/987654")
    assert page.status_code == 404
    assert "no event of dbt run 987654 was received" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert api.get("/api/runs/987654").status_code == 404


def test_events_and_jobs_link_to_their_run(relay: Relay, api: httpx.Client) -> None:
    relay.post(sample_event("completed", job_id=101, run_id=31337))
    [job] = relay.settled_jobs()
    home = api.get("/").text
    assert home.count('href="/runs/31337"') == 2  # the event's run, and the job's
    assert api.get("/runs/31337").status_code == 200
    assert 'href="/runs/31337"' in api.get(f"/jobs/{job.id}").text


# -- a job's page ------------------------------------------------------------------


def test_a_jobs_page_shows_its_attempts_events_and_why(relay: Relay, api: httpx.Client) -> None:
    seeded = seed_lineage_run(relay.store)
    [failed] = (j for j in three_runs(relay) if j.rule_name == "ledger")
    html = api.get(f"/jobs/{failed.id}").text
    assert "Login failed" in html
    assert '<span class="badge s-accepted">accepted</span>' in html
    assert f'action="/jobs/{failed.id}/replay"' in html
    made = api.get(f"/jobs/{seeded.refresh_job_id}").text
    assert "Why: the lineage decision" in made
    assert "orders: success" in made
    assert f'href="/runs/{seeded.run_id}"' in made


def test_an_unknown_job_page_is_a_404(api: httpx.Client) -> None:
    answer = api.get("/jobs/424242")
    assert answer.status_code == 404
    assert "refresh job 424242 does not exist" in answer.text


# -- filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"state": "failed"}, lambda j: j.state == "failed"),
        ({"rule": "finance"}, lambda j: j.rule_name == "finance"),
        ({"item": "EXECUTIVE"}, lambda j: "Executive" in j.target_ref),
        ({"target": EXEC}, lambda j: j.target_ref == EXEC),
        (
            {"state": "succeeded", "item": "finance"},
            lambda j: j.state == "succeeded" and j.target_ref.startswith("Finance"),
        ),
    ],
)
def test_jobs_are_filtered_on_the_page_and_in_the_api(
    relay: Relay, api: httpx.Client, params: dict[str, str], keep: object
) -> None:
    jobs = three_runs(relay)
    expected = sorted((j.id for j in jobs if keep(j)), reverse=True)  # type: ignore[operator]
    assert expected  # each filter keeps some, and (below) drops some
    assert len(expected) < len(jobs)
    assert [j["id"] for j in api.get("/api/jobs", params=params).json()] == expected
    assert shown_jobs(api.get("/jobs", params=params).text) == expected


def test_the_form_sends_empty_fields_which_filter_nothing(relay: Relay, api: httpx.Client) -> None:
    jobs = three_runs(relay)
    html = api.get("/jobs?state=&rule=&item=").text
    assert sorted(shown_jobs(html)) == [j.id for j in jobs]


def test_an_unknown_state_on_the_page_names_the_known_ones(api: httpx.Client) -> None:
    answer = api.get("/jobs?state=exploded")
    assert answer.status_code == 400
    assert "unknown state &#39;exploded&#39;: one of queued, sending" in answer.text


def test_an_items_history_lists_every_job_of_it(relay: Relay, api: httpx.Client) -> None:
    relay.tableau.set_refresh_outcome(relay.tableau.luid("datasource", LEGACY_LEDGER), 0)
    relay.post(sample_event("completed", job_id=303, run_id=1))
    relay.settled_jobs()
    relay.post(sample_event("completed", job_id=303, run_id=2))
    relay.post(sample_event("completed", job_id=101, run_id=3))
    ledger = [j.id for j in relay.settled_jobs() if j.target_ref == LEGACY_LEDGER]
    assert len(ledger) == 2
    home = api.get("/").text
    link = re.search(r'href="(/jobs\?target=Finance%2FLegacy\+Ledger)"', home)
    assert link is not None
    html = api.get(link[1]).text
    assert f"History of {LEGACY_LEDGER}" in html
    assert shown_jobs(html) == ledger[::-1]


def test_events_are_filtered_by_dbt_job_on_the_page_and_in_the_api(
    relay: Relay, api: httpx.Client
) -> None:
    three_runs(relay)
    assert [e["run_id"] for e in api.get("/api/events", params={"job_id": "202"}).json()] == ["2"]
    html = api.get("/events", params={"job_id": "303"}).text
    assert re.findall(r'href="/runs/(\d+)"', html) == ["3"]


# -- pages ---------------------------------------------------------------------------


def test_every_job_is_reached_by_following_older_links(relay: Relay, api: httpx.Client) -> None:
    made = add_jobs(relay, 120)
    seen: list[int] = []
    url: str | None = "/jobs?rule=bulk"
    while url is not None:
        html = api.get(url).text
        seen += shown_jobs(html)
        older = re.search(r'rel="next" href="([^"]+)"', html)
        url = older[1].replace("&amp;", "&") if older else None
    assert seen == made[::-1]
    assert len(seen) == 120


def test_a_later_page_links_back_to_the_newer_one(relay: Relay, api: httpx.Client) -> None:
    made = add_jobs(relay, 30)
    html = api.get("/jobs?limit=10&offset=10").text
    assert shown_jobs(html) == made[::-1][10:20]
    assert 'rel="prev" href="/jobs?offset=0&amp;limit=10"' in html
    assert 'rel="next" href="/jobs?offset=20&amp;limit=10"' in html


def test_the_overview_links_to_older_jobs_beyond_its_last_50(
    relay: Relay, api: httpx.Client
) -> None:
    made = add_jobs(relay, 55)
    home = api.get("/").text
    assert shown_jobs(home.split('id="events"')[0].split('id="jobs"')[1]) == made[::-1][:50]
    assert 'href="/jobs?offset=50">Older' in home
    assert shown_jobs(api.get("/jobs?offset=50").text) == made[::-1][50:]


def test_the_api_pages_jobs_with_offset(relay: Relay, api: httpx.Client) -> None:
    made = add_jobs(relay, 7)
    page = api.get("/api/jobs", params={"limit": 3, "offset": 3}).json()
    assert [j["id"] for j in page] == made[::-1][3:6]


def test_events_beyond_the_first_page_are_reached(relay: Relay, api: httpx.Client) -> None:
    for run_id in range(5):
        relay.post(sample_event("completed", job_id=999, run_id=run_id))
    html = api.get("/events?limit=2&offset=2").text
    assert re.findall(r'href="/runs/(\d+)"', html) == ["2", "1"]
    assert 'rel="next" href="/events?offset=4&amp;limit=2"' in html


@pytest.mark.parametrize("path", ["/jobs?limit=501", "/jobs?offset=-1", "/events?limit=0"])
def test_a_limit_out_of_bounds_is_refused(api: httpx.Client, path: str) -> None:
    assert api.get(path).status_code == 422


# -- access --------------------------------------------------------------------------

PAGES = ["/jobs", "/jobs/1", "/events", "/runs/1"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_behind_the_admin_token(tmp_path: Path, path: str) -> None:
    with (
        emulator() as tableau,
        admin_relay(tableau, f"sqlite:///{tmp_path / 'relay.db'}", token=TOKEN) as relay,
    ):
        seed_lineage_run(relay.store, run_id="1")
        with client(relay) as anonymous:
            answer = anonymous.get(path)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == 'Basic realm="dbt-tableau-relay"'
        with client(relay, TOKEN) as admin:
            assert admin.get(path).status_code == 200
