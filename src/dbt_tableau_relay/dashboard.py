"""`GET /`: the dashboard, one server-rendered page that reloads itself every few seconds.

What an analytics engineer opens to see whether this morning's dashboards got
this morning's data: the newest refresh of each item first, then recent
refresh jobs (failed and dead ones marked, with a Replay button) and recent
dbt events. Plain HTML and CSS, no script; every value goes through
`html.escape`. Behind the same access rule as the JSON API (`admin.py`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from dbt_tableau_relay import __version__
from dbt_tableau_relay.admin import AdminAccess, Id, replay_job, store_of
from dbt_tableau_relay.errors import ReplayError, UnknownJobError
from dbt_tableau_relay.queue import REPLAYABLE_STATES
from dbt_tableau_relay.store import Event, RefreshJob, RefreshJobEvent, Store, utcnow

REFRESH_SECONDS: Final = 5
RECENT_JOBS: Final = 50
RECENT_EVENTS: Final = 30
NOTES_SHOWN: Final = 240  # characters of an error or Tableau's notes; the rest in a tooltip
PROBLEM_STATES: Final = ("failed", "dead")
# No script, no frames: nothing may run here, and the Replay button cannot be clickjacked.
HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False, dependencies=[Depends(AdminAccess("Basic"))])


@dataclass
class Snapshot:
    """What one rendering of the page shows, read from the store."""

    counts: dict[str, int]
    latest: list[RefreshJob]  # the newest job of each item
    jobs: list[RefreshJob]
    events: list[Event]
    jobs_of_event: dict[int, list[tuple[int, str]]] = field(default_factory=dict)


def snapshot(store: Store) -> Snapshot:
    jobs = store.list_jobs(limit=RECENT_JOBS)
    events = store.list_events(limit=RECENT_EVENTS)
    latest_ids = select(func.max(RefreshJob.id)).where(RefreshJob.state != "merged")
    latest_query = select(RefreshJob).where(
        RefreshJob.id.in_(latest_ids.group_by(RefreshJob.target_key))
    )
    links = (
        select(RefreshJobEvent.event_pk, RefreshJob.id, RefreshJob.state)
        .join(RefreshJob, RefreshJob.id == RefreshJobEvent.refresh_job_id)
        .where(RefreshJobEvent.event_pk.in_([e.id for e in events]))
        .order_by(RefreshJob.id)
    )
    with store.session(readonly=True) as session:
        latest = sorted(session.scalars(latest_query), key=lambda j: j.target_ref)
        jobs_of_event: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for event_pk, job_id, state in session.execute(links):
            jobs_of_event[event_pk].append((job_id, state))
    return Snapshot(store.counts_by_state(), latest, jobs, events, jobs_of_event)


# -- routes --------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, replayed: int | None = None, to: int | None = None) -> Response:
    flash = (replayed, to) if replayed is not None and to is not None else None
    page = render_page(snapshot(store_of(request)), flash=flash)
    return HTMLResponse(page, headers=HEADERS)


@router.post("/jobs/{job_id}/replay")
def replay(request: Request, job_id: Id) -> Response:
    """The Replay button: replay, then back to the page, which says what happened."""
    try:
        new_id = replay_job(request, job_id, by="dashboard")
    except ReplayError as exc:
        status = 404 if isinstance(exc, UnknownJobError) else 409
        return HTMLResponse(render_message(str(exc)), status_code=status, headers=HEADERS)
    root = request.scope.get("root_path", "").rstrip("/")
    return RedirectResponse(f"{root}/?replayed={job_id}&to={new_id}", 303)


# -- rendering -----------------------------------------------------------------


def e(value: object) -> str:
    return "" if value is None else escape(str(value))


def when(value: datetime | None) -> str:
    """UTC time as `2026-05-20 06:02:13`, with the full ISO 8601 time as its tooltip."""
    if value is None:
        return '<span class="none">—</span>'
    return (
        f'<time datetime="{e(value.isoformat())}">{e(value.strftime("%Y-%m-%d %H:%M:%S"))}</time>'
    )


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


def short_id(luid: str | None) -> str:
    """A Tableau job's LUID by its first 8 digits, enough to tell jobs apart; all in the tooltip."""
    if not luid:
        return ""
    return f'<span class="mono" title="{e(luid)}">{e(luid[:8])}</span>'


def badge(state: str) -> str:
    return f'<span class="badge s-{e(state)}">{e(state)}</span>'


def job_link(job_id: int, state: str | None = None) -> str:
    label = f"#{job_id}" if state is None else f"#{job_id} {e(state)}"
    css = f' class="s-{e(state)}"' if state else ""
    return f'<a href="#job-{job_id}"{css}>{label}</a>'


def target(job: RefreshJob) -> str:
    kind = "data source" if job.target_kind == "datasource" else job.target_kind
    return f'<span class="kind">{e(kind)}</span> {e(job.target_ref)}'


def render_page(snap: Snapshot, *, flash: tuple[int, int] | None = None) -> str:
    now = utcnow()
    body = "\n".join(
        [
            _header(now),
            _flash(flash),
            _verdict(snap),
            _counts(snap.counts),
            _latest(snap, now),
            _jobs(snap, fresh=flash[1] if flash else None),
            _events(snap),
        ]
    )
    return _document(body, refresh=True)


def render_message(message: str) -> str:
    body = f'<p class="banner bad">{e(message)}</p><p><a href="./">Back to the dashboard</a></p>'
    return _document(body, refresh=False)


def _document(body: str, *, refresh: bool) -> str:
    # To the plain page: a refresh of a URL with a #fragment (a job link) would not reload it,
    # and the note of a replay is said once.
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}; url=./">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
        f"<title>dbt-tableau-relay</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def _header(now: datetime) -> str:
    return (
        f"<header><h1>dbt-tableau-relay</h1><span>{e(__version__)} · times in UTC · "
        f"updated {e(now.strftime('%H:%M:%S'))}, every {REFRESH_SECONDS} s</span></header>"
    )


def _flash(flash: tuple[int, int] | None) -> str:
    if flash is None:
        return ""
    old, new = flash
    return (
        f'<p class="banner info">Refresh job #{old} replayed: '
        f"{job_link(new)} will refresh its item for its events.</p>"
    )


def _verdict(snap: Snapshot) -> str:
    """One line that answers "is everything refreshed?" for the newest job of each item."""
    bad = [j for j in snap.latest if j.state in PROBLEM_STATES]
    running = [j for j in snap.latest if j.state not in (*PROBLEM_STATES, "succeeded")]
    if bad:
        names = ", ".join(e(j.target_ref) for j in bad)
        return f'<p class="banner bad">{plural(len(bad), "item")} not refreshed: {names}</p>'
    if running:
        return f'<p class="banner busy">{plural(len(running), "refresh", "es")} in progress</p>'
    if snap.latest:
        return '<p class="banner ok">Every item\'s newest refresh succeeded</p>'
    return '<p class="banner">No refresh yet: waiting for dbt Cloud events</p>'


def _counts(counts: dict[str, int]) -> str:
    cells = "".join(
        f'<div class="count s-{e(state)}{" zero" if not n else ""}">'
        f"<b>{n}</b><span>{e(state)}</span></div>"
        for state, n in counts.items()
    )
    return f'<section><h2>Refresh jobs by state</h2><div class="counts">{cells}</div></section>'


def _latest(snap: Snapshot, now: datetime) -> str:
    rows = "".join(
        f'<tr class="r-{e(j.state)}"><td>{target(j)}</td><td>{badge(j.state)}</td>'
        f"<td>{when(j.finished_at)} <small>{e(ago(j.finished_at, now))}</small></td>"
        f"<td>{when(j.last_event_at)}</td><td>{job_link(j.id)}{_replay_cell(j, snap)}</td></tr>"
        for j in snap.latest
    )
    head = "<th>Item</th><th>State</th><th>Finished</th><th>Newest event</th><th>Job</th>"
    return _table("Newest refresh of each item", head, rows, "latest")


def _jobs(snap: Snapshot, fresh: int | None) -> str:
    rows = "".join(_job_row(j, snap, fresh=j.id == fresh) for j in snap.jobs)
    head = (
        "<th>#</th><th>Rule</th><th>Item</th><th>State</th><th>Tableau job</th>"
        "<th>Finish code</th><th>Attempts</th><th>Error / notes</th><th>Sent</th>"
        "<th>Finished</th><th></th>"
    )
    return _table(f"Recent refresh jobs (last {RECENT_JOBS})", head, rows, "jobs")


def _job_row(job: RefreshJob, snap: Snapshot, *, fresh: bool = False) -> str:
    notes = job.error or ""
    shown = notes if len(notes) <= NOTES_SHOWN else notes[:NOTES_SHOWN] + "…"
    code = f"<b>{e(job.error_code)}</b> " if job.error_code else ""
    return (
        f'<tr id="job-{job.id}" class="r-{e(job.state)}{" fresh" if fresh else ""}">'
        f"<td>{job.id}</td>"
        f"<td>{e(job.rule_name)}</td><td>{target(job)}</td><td>{badge(job.state)}</td>"
        f"<td>{short_id(job.tableau_job_id)}</td><td>{e(job.finish_code)}</td>"
        f'<td>{job.attempts}</td><td class="notes" title="{e(notes)}">{code}{e(shown)}</td>'
        f"<td>{when(job.sent_at)}</td><td>{when(job.finished_at)}</td>"
        f"<td>{_replay_cell(job, snap)}</td></tr>"
    )


def _replay_cell(job: RefreshJob, snap: Snapshot) -> str:
    """A Replay button on a failed or dead job; once replayed, the job that took over."""
    if job.state not in REPLAYABLE_STATES:
        return ""
    if (new := job.replayed_as) is not None:
        return f' <span class="replayed">replayed as {job_link(new)}</span>'
    return (
        f'<form method="post" action="jobs/{job.id}/replay">'
        f'<button type="submit" title="Refresh this item again for these events">'
        f"Replay #{job.id}</button></form>"
    )


def _events(snap: Snapshot) -> str:
    rows = "".join(
        f'<tr class="o-{e(ev.outcome)}"><td class="mono">{e(ev.event_id)}</td>'
        f"<td>{e(ev.event_type)}</td><td>{e(ev.job_id)}</td><td>{e(ev.run_id)}</td>"
        f'<td><span class="badge o-{e(ev.outcome)}" title="{e(ev.detail)}">{e(ev.outcome)}</span>'
        f"</td><td>{when(ev.received_at)}</td><td>"
        + " ".join(job_link(j, state) for j, state in snap.jobs_of_event.get(ev.id, []))
        + "</td></tr>"
        for ev in snap.events
    )
    head = (
        "<th>eventId</th><th>Type</th><th>dbt job</th><th>Run</th><th>Outcome</th>"
        "<th>Received</th><th>Refreshes</th>"
    )
    return _table(f"Recent dbt Cloud events (last {RECENT_EVENTS})", head, rows, "events")


def _table(title: str, head: str, rows: str, name: str) -> str:
    if not rows:
        return f'<section id="{name}"><h2>{e(title)}</h2><p class="none">None yet.</p></section>'
    return (
        f'<section id="{name}"><h2>{e(title)}</h2><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


CSS: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1d2329;
       background: #f6f7f9 }
header { display: flex; align-items: baseline; gap: 1rem; border-bottom: 1px solid #d5d9de }
h1 { font-size: 1.3rem; margin: .8rem 0 }
header span, small, .kind { color: #5b6570 }
h2 { font-size: 1rem; margin: 1.4rem 0 .5rem }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d5d9de }
th, td { padding: .35rem .55rem; border-bottom: 1px solid #e6e9ec; text-align: left;
         vertical-align: top }
th { background: #eef0f3; font-weight: 600; font-size: .85rem; white-space: nowrap }
.replayed, button { white-space: nowrap }
.mono { font-family: ui-monospace, monospace; font-size: .85rem }
.kind { font-size: .8rem }
.none { color: #8a939c }
.notes { max-width: 26rem; font-size: .85rem; overflow-wrap: anywhere }
.banner { padding: .6rem .9rem; border-radius: 6px; font-weight: 600; background: #eef0f3 }
.banner.ok { background: #e3f4e8; color: #17602f }
.banner.bad { background: #fde4e4; color: #9b1c1c }
.banner.busy { background: #e4eefc; color: #1d4f91 }
.banner.info { background: #fff6d6; color: #6b5200 }
.counts { display: flex; gap: .5rem; flex-wrap: wrap }
.count { background: #fff; border: 1px solid #d5d9de; border-left-width: 5px;
         border-radius: 6px; padding: .3rem .8rem }
.count b { font-size: 1.3rem; margin-right: .4rem }
.count.zero { opacity: .55 }
.count.s-succeeded { border-left-color: #2e9e52 }
.count.s-failed { border-left-color: #d92d2d }
.count.s-dead { border-left-color: #5c0f0f }
.count.s-queued, .count.s-sending, .count.s-following { border-left-color: #3b7ddd }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .8rem;
         font-weight: 600 }
.badge.s-succeeded, .badge.o-queued { background: #d3f0dc; color: #17602f }
.badge.s-failed { background: #d92d2d; color: #fff }
.badge.s-dead { background: #5c0f0f; color: #fff }
.badge.s-queued, .badge.s-sending, .badge.s-following { background: #d8e6fb; color: #1d4f91 }
.badge.s-merged, .badge.o-ignored { background: #e6e9ec; color: #5b6570 }
.badge.o-invalid { background: #fde4e4; color: #9b1c1c }
tr.r-failed td, tr.r-dead td { background: #fff1f1 }
tr.r-failed td:first-child, tr.r-dead td:first-child { box-shadow: inset 4px 0 #d92d2d }
tr.fresh td { background: #fff6d6 }
a { color: #1d4f91 }
a.s-failed, a.s-dead { color: #b11d1d; font-weight: 600 }
form { display: inline; margin: 0 0 0 .4rem }
button { font: inherit; font-weight: 600; color: #fff; background: #1d4f91; border: 0;
         border-radius: 5px; padding: .2rem .7rem; cursor: pointer }
button:hover { background: #153b6d }
.replayed { color: #5b6570; font-size: .85rem }
"""
