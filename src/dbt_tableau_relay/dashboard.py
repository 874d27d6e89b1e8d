"""The dashboard: server-rendered pages of what the relay received and did, for people.

- `GET /`: the overview, which reloads itself every few seconds: the newest
  refresh of each item, recent refresh jobs (failed and dead ones marked, with
  a Replay button) and recent dbt events.
- `GET /jobs?state=&rule=&item=&target=&offset=&limit=`: refresh jobs,
  filtered and paged; `target` is one item's history.
- `GET /jobs/{id}`: one refresh job: its attempts, its events, its lineage decision.
- `GET /events?job_id=&offset=&limit=`: dbt events, paged.
- `GET /runs/{run_id}`: one dbt run: its events, what each lineage rule decided
  for each Tableau item and why, and the refreshes it caused.

Each page is a snapshot read from the store (`reads.py`), then rendered by a
pure function into a Jinja2 template (`templates/`, autoescaped: no value is
escaped by hand). Plain HTML and CSS, no script (see `HEADERS`). Behind the
same access rule as the JSON API (`admin.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dbt_tableau_relay import __version__, reads
from dbt_tableau_relay.admin import AdminAccess, Id, Limit, Offset, replay_job, store_of
from dbt_tableau_relay.errors import LineageError, ReplayError, UnknownJobError
from dbt_tableau_relay.lineage.model import Decision
from dbt_tableau_relay.reads import JobFilter, Page, decision_of, decisions_of, item_path
from dbt_tableau_relay.runs import LineageJob
from dbt_tableau_relay.states import FINAL_STATES, JOB_STATES, REPLAYABLE_STATES, JobState
from dbt_tableau_relay.store import Event, RefreshJob, Store, utcnow

REFRESH_SECONDS: Final = 5
RECENT_JOBS: Final = 50
RECENT_EVENTS: Final = 30
NOTES_SHOWN: Final = 240  # characters of an error or Tableau's notes; the rest in a tooltip
PROBLEM_STATES: Final = REPLAYABLE_STATES
LINEAGE_FINAL: Final = ("done", "failed", "dead")
# No script, no frames: nothing may run here, and the Replay button cannot be clickjacked.
HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
Text = Annotated[str, Query(max_length=600)]

router = APIRouter(include_in_schema=False, dependencies=[Depends(AdminAccess("Basic"))])


# -- snapshots: what one rendering shows, read from the store -----------------


@dataclass
class Snapshot:
    """The overview."""

    counts: dict[str, int]
    latest: list[RefreshJob]  # the newest job of each item
    jobs: list[RefreshJob]
    events: list[Event]
    jobs_of_event: Mapping[int, list[tuple[int, str]]] = field(default_factory=dict)
    runs_of_job: Mapping[int, list[str]] = field(default_factory=dict)
    more_jobs: bool = False
    more_events: bool = False


@dataclass
class JobsSnapshot:
    page: Page[RefreshJob]
    filter: JobFilter = field(default_factory=JobFilter)
    runs_of_job: Mapping[int, list[str]] = field(default_factory=dict)


@dataclass
class EventsSnapshot:
    page: Page[Event]
    job_id: str | None = None
    jobs_of_event: Mapping[int, list[tuple[int, str]]] = field(default_factory=dict)


@dataclass
class JobSnapshot:
    job: RefreshJob  # with attempt_log and events
    runs: list[str] = field(default_factory=list)
    decision: Decision | None = None
    explanation_error: str | None = None


@dataclass
class DecisionRow:
    decision: Decision
    job: RefreshJob | None = None  # the refresh this run caused for the item, if it did


@dataclass
class LineageView:
    job: LineageJob
    decisions: list[DecisionRow] = field(default_factory=list)
    explanation_error: str | None = None

    @property
    def refreshed(self) -> int:
        return sum(r.decision.action == "refresh" for r in self.decisions)

    @property
    def skipped(self) -> int:
        return len(self.decisions) - self.refreshed


@dataclass
class RunSnapshot:
    run_id: str
    events: Sequence[Event]
    lineage: list[LineageView]
    jobs: Sequence[RefreshJob]
    jobs_of_event: Mapping[int, list[tuple[int, str]]] = field(default_factory=dict)
    runs_of_job: Mapping[int, list[str]] = field(default_factory=dict)


def snapshot(store: Store) -> Snapshot:
    jobs = reads.jobs(store, limit=RECENT_JOBS)
    events = reads.events(store, limit=RECENT_EVENTS)
    return Snapshot(
        store.counts_by_state(),
        reads.latest_per_item(store),
        jobs.rows,
        events.rows,
        reads.jobs_of_events(store, [e.id for e in events.rows]),
        reads.runs_of_jobs(store, [j.id for j in jobs.rows]),
        more_jobs=jobs.more,
        more_events=events.more,
    )


def jobs_snapshot(store: Store, where: JobFilter, *, limit: int, offset: int) -> JobsSnapshot:
    page = reads.jobs(store, where, limit=limit, offset=offset)
    return JobsSnapshot(page, where, reads.runs_of_jobs(store, [j.id for j in page.rows]))


def events_snapshot(store: Store, job_id: str | None, *, limit: int, offset: int) -> EventsSnapshot:
    page = reads.events(store, job_id=job_id, limit=limit, offset=offset)
    return EventsSnapshot(page, job_id, reads.jobs_of_events(store, [e.id for e in page.rows]))


def job_snapshot(store: Store, pk: int) -> JobSnapshot | None:
    job = reads.job(store, pk)
    if job is None:
        return None
    runs = sorted({e.run_id for e in job.events if e.run_id})
    if not job.explanation:
        return JobSnapshot(job, runs)
    try:
        decision = decision_of(job.explanation)
    except LineageError as exc:
        return JobSnapshot(job, runs, explanation_error=str(exc))
    return JobSnapshot(job, runs, decision)


def run_snapshot(store: Store, run_id: str) -> RunSnapshot | None:
    story = reads.run_story(store, run_id)
    if story is None:
        return None
    return RunSnapshot(
        run_id,
        story.events,
        [lineage_view(j, story.jobs) for j in story.lineage],
        story.jobs,
        reads.jobs_of_events(store, [e.id for e in story.events]),
        reads.runs_of_jobs(store, [j.id for j in story.jobs]),
    )


def lineage_view(job: LineageJob, refreshes: Sequence[RefreshJob]) -> LineageView:
    """A lineage job's decisions, each `refresh` with the run's (newest) job for its item."""
    newest = {(j.target_kind, j.target_ref): j for j in sorted(refreshes, key=lambda j: j.id)}
    try:
        decisions = decisions_of(job.explanation) if job.explanation else []
    except LineageError as exc:
        return LineageView(job, explanation_error=str(exc))
    rows = [
        DecisionRow(d, newest.get((d.item.kind, d.item.luid)) if d.action == "refresh" else None)
        for d in decisions
    ]
    return LineageView(job, rows)


# -- routes --------------------------------------------------------------------


def page(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, replayed: int | None = None, to: int | None = None) -> Response:
    flash = (replayed, to) if replayed is not None and to is not None else None
    return page(render_page(snapshot(store_of(request)), flash=flash, root=root_of(request)))


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    state: Text = "",
    rule: Text = "",
    item: Text = "",
    target: Text = "",
    limit: Limit = reads.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Response:
    root = root_of(request)
    if state and state not in JOB_STATES:
        known = ", ".join(JOB_STATES)
        return page(render_message(f"unknown state {state!r}: one of {known}", root=root), 400)
    where = JobFilter(state or None, rule or None, target or None, item or None)
    snap = jobs_snapshot(store_of(request), where, limit=limit, offset=offset)
    return page(render_jobs(snap, root=root))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: Id) -> Response:
    root = root_of(request)
    snap = job_snapshot(store_of(request), job_id)
    if snap is None:
        return page(render_message(f"refresh job {job_id} does not exist", root=root), 404)
    return page(render_job(snap, root=root))


@router.get("/events", response_class=HTMLResponse)
def events_page(
    request: Request, job_id: Text = "", limit: Limit = reads.DEFAULT_LIMIT, offset: Offset = 0
) -> Response:
    snap = events_snapshot(store_of(request), job_id or None, limit=limit, offset=offset)
    return page(render_events(snap, root=root_of(request)))


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: Annotated[str, Path(max_length=64)]) -> Response:
    root = root_of(request)
    snap = run_snapshot(store_of(request), run_id)
    if snap is None:
        return page(render_message(f"no event of dbt run {run_id} was received", root=root), 404)
    return page(render_run(snap, root=root))


@router.post("/jobs/{job_id}/replay")
def replay(request: Request, job_id: Id) -> Response:
    """The Replay button: replay, then back to the overview, which says what happened."""
    root = root_of(request)
    try:
        new_id = replay_job(request, job_id, by="dashboard")
    except ReplayError as exc:
        status = 404 if isinstance(exc, UnknownJobError) else 409
        return page(render_message(str(exc), root=root), status)
    return RedirectResponse(f"{root}/?replayed={job_id}&to={new_id}", 303)


# -- rendering: pure functions of a snapshot -----------------------------------


def render_page(snap: Snapshot, *, flash: tuple[int, int] | None = None, root: str = "") -> str:
    """The overview; it reloads itself."""
    bad = [j for j in snap.latest if j.state in PROBLEM_STATES]
    running = [j for j in snap.latest if j.state not in (*PROBLEM_STATES, JobState.SUCCEEDED)]
    return render(
        "overview.html", root, refresh="home", snap=snap, flash=flash, bad=bad, running=running
    )


def render_jobs(snap: JobsSnapshot, *, root: str = "") -> str:
    """Refresh jobs with the filter form; not reloaded, so that typing in it is kept."""
    f = snap.filter
    params = {"state": f.state, "rule": f.rule, "target": f.target, "item": f.item}
    return render("jobs.html", root, snap=snap, f=f, params=params, states=JOB_STATES)


def render_events(snap: EventsSnapshot, *, root: str = "") -> str:
    return render("events.html", root, snap=snap, params={"job_id": snap.job_id})


def render_job(snap: JobSnapshot, *, root: str = "") -> str:
    """One job; reloaded until it is final."""
    return render("job.html", root, refresh=snap.job.state not in FINAL_STATES, snap=snap)


def render_run(snap: RunSnapshot, *, root: str = "") -> str:
    """One dbt run; reloaded while a lineage job or a refresh of it is unfinished."""
    busy = any(v.job.state not in LINEAGE_FINAL for v in snap.lineage) or any(
        j.state not in FINAL_STATES for j in snap.jobs
    )
    return render("run.html", root, refresh=busy, snap=snap)


def render_message(message: str, *, root: str = "") -> str:
    return render("message.html", root, message=message)


def render(template: str, root: str, *, refresh: bool | str = False, **context: Any) -> str:
    return (
        environment()
        .get_template(template)
        .render(root=root, refresh=refresh, now=utcnow(), **context)
    )


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dbt_tableau_relay", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests, not the page
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters |= {"blank": blank, "path_part": path_part}
    env.globals |= {
        "version": __version__,
        "refresh_seconds": REFRESH_SECONDS,
        "recent_jobs": RECENT_JOBS,
        "recent_events": RECENT_EVENTS,
        "notes_shown": NOTES_SHOWN,
        "replayable": REPLAYABLE_STATES,
        "qs": qs,
        "ago": ago,
        "plural": plural,
        "kind_name": kind_name,
        "item_path": item_path,
    }
    return env


# -- helpers the templates call ------------------------------------------------


def blank(value: object) -> object:
    """None shown as nothing (Jinja would print "None")."""
    return "" if value is None else value


def path_part(value: object) -> str:
    """A value as one URL path segment."""
    return quote(str(value), safe="")


def qs(**params: object) -> str:
    """A query string of the parameters that have a value."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def plural(n: int, noun: str, suffix: str = "s") -> str:
    return f"{n} {noun}{'' if n == 1 else suffix}"


def kind_name(kind: str) -> str:
    return "data source" if kind == "datasource" else kind
