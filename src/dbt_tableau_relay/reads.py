"""The read side: what the dashboard, the admin API and the CLI show, filtered and paged.

Each reader opens one read-only session on the Store and returns rows detached
from it (the Store's sessions do not expire on commit). Limits are bounded by
`MAX_LIMIT`; a page reads one row more than it shows, so "is there an older
page?" costs no COUNT. `Store.list_jobs` and friends predate this module and
answer the same questions unfiltered; they can move here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import selectinload

from dbt_tableau_relay.errors import LineageError
from dbt_tableau_relay.lineage.explain import from_json
from dbt_tableau_relay.lineage.model import Decision
from dbt_tableau_relay.runs import LineageJob, lineage_jobs_of_run
from dbt_tableau_relay.states import JobState
from dbt_tableau_relay.store import Event, RefreshJob, RefreshJobEvent, Store, storable

MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 50
_LIKE_ESCAPE: Final = "\\"

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    """One page of a newest-first list: `rows` from `offset`, and whether older rows follow."""

    rows: list[Row]
    offset: int
    limit: int
    more: bool

    @property
    def older(self) -> int | None:
        """The offset of the next (older) page, if there is one."""
        return self.offset + self.limit if self.more else None

    @property
    def newer(self) -> int | None:
        """The offset of the previous (newer) page, if this is not the first."""
        return max(0, self.offset - self.limit) if self.offset else None


@dataclass(frozen=True)
class JobFilter:
    """Which refresh jobs to list; every field given must hold (None: any)."""

    state: str | None = None
    rule: str | None = None  # a rule's name, exactly
    target: str | None = None  # the item exactly as the job names it: a path, or a LUID
    item: str | None = None  # a part of that, or of a lineage-made job's path, in any case

    @property
    def active(self) -> bool:
        return any((self.state, self.rule, self.target, self.item))

    def clauses(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses; values as the store keeps text (a NUL would fail PostgreSQL)."""
        rj, found = RefreshJob, []
        if self.state:
            found.append(rj.state == storable(self.state))
        if self.rule:
            found.append(rj.rule_name == storable(self.rule))
        if self.target:
            found.append(rj.target_ref == storable(self.target))
        if self.item:
            found.append(_item_matches(storable(self.item)))
        return found


def _like(term: str) -> str:
    """`term` as a LIKE pattern that matches it literally (its % and _ too)."""
    for char in (_LIKE_ESCAPE, "%", "_"):
        term = term.replace(char, _LIKE_ESCAPE + char)
    return term


def _item_matches(term: str) -> ColumnElement[bool]:
    """The job's item names `term`: in its target, or in the path its lineage decision gives.

    A lineage-made job is sent by LUID; its `Project/Name` path is only in its
    explanation (`lineage.explain.to_json`, keys in a fixed order, written with
    json.dumps' separators). There the term is matched between `"path": "` and
    `", "action"`, which occur once each: JSON escapes every quote inside a value.
    The term is JSON-escaped the same way, so non-ASCII names match too.
    """
    in_json = _like(json.dumps(term)[1:-1])
    return or_(
        RefreshJob.target_ref.ilike(f"%{_like(term)}%", escape=_LIKE_ESCAPE),
        RefreshJob.explanation.ilike(f'%"path": "%{in_json}%", "action"%', escape=_LIKE_ESCAPE),
    )


def bounded(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def _page(store: Store, query: Select[Row], limit: int, offset: int) -> Page[Row]:
    limit, offset = bounded(limit), max(0, offset)
    with store.session(readonly=True) as session:
        rows = list(session.scalars(query.limit(limit + 1).offset(offset)))
    return Page(rows[:limit], offset, limit, more=len(rows) > limit)


def jobs(
    store: Store, where: JobFilter | None = None, *, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> Page[RefreshJob]:
    """Refresh jobs, newest first, that pass the filter."""
    query = select(RefreshJob).order_by(RefreshJob.id.desc())
    if where is not None and (clauses := where.clauses()):
        query = query.where(*clauses)
    return _page(store, query, limit, offset)


def events(
    store: Store,
    *,
    job_id: str | None = None,
    run_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> Page[Event]:
    """Received events, newest first, optionally of one dbt job or run."""
    query = select(Event).order_by(Event.id.desc())
    if job_id:
        query = query.where(Event.job_id == storable(job_id))
    if run_id:
        query = query.where(Event.run_id == storable(run_id))
    return _page(store, query, limit, offset)


def job(store: Store, pk: int) -> RefreshJob | None:
    """One refresh job with its `attempt_log` and `events` loaded."""
    query = (
        select(RefreshJob)
        .where(RefreshJob.id == pk)
        .options(selectinload(RefreshJob.attempt_log), selectinload(RefreshJob.events))
    )
    with store.session(readonly=True) as session:
        return session.scalars(query).one_or_none()


def latest_per_item(store: Store) -> list[RefreshJob]:
    """The newest job of each item (merged ones aside), by the item's name."""
    newest = (
        select(func.max(RefreshJob.id))
        .where(RefreshJob.state != JobState.MERGED)
        .group_by(RefreshJob.target_key)
    )
    query = select(RefreshJob).where(RefreshJob.id.in_(newest))
    with store.session(readonly=True) as session:
        return sorted(session.scalars(query), key=lambda j: j.target_ref)


def jobs_of_events(store: Store, event_pks: Iterable[int]) -> dict[int, list[tuple[int, str]]]:
    """For each event, the (id, state) of the refresh jobs that serve it, oldest first."""
    query = (
        select(RefreshJobEvent.event_pk, RefreshJob.id, RefreshJob.state)
        .join(RefreshJob, RefreshJob.id == RefreshJobEvent.refresh_job_id)
        .where(RefreshJobEvent.event_pk.in_(list(event_pks)))
        .order_by(RefreshJob.id)
    )
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    with store.session(readonly=True) as session:
        for event_pk, job_id, state in session.execute(query):
            found[event_pk].append((job_id, state))
    return dict(found)


def runs_of_jobs(store: Store, job_ids: Iterable[int]) -> dict[int, list[str]]:
    """For each refresh job, the dbt run ids of the events it serves (a job can serve several)."""
    query = (
        select(RefreshJobEvent.refresh_job_id, Event.run_id)
        .join(Event, Event.id == RefreshJobEvent.event_pk)
        .where(RefreshJobEvent.refresh_job_id.in_(list(job_ids)), Event.run_id.is_not(None))
        .distinct()
        .order_by(RefreshJobEvent.refresh_job_id, Event.run_id)
    )
    found: dict[int, list[str]] = defaultdict(list)
    with store.session(readonly=True) as session:
        for job_id, run_id in session.execute(query):
            found[job_id].append(str(run_id))
    return dict(found)


@dataclass(frozen=True)
class RunStory:
    """A dbt run: its events, its lineage jobs (with their decisions), the refreshes it caused."""

    run_id: str
    events: Sequence[Event]
    lineage: Sequence[LineageJob]
    jobs: Sequence[RefreshJob]


def run_story(store: Store, run_id: str) -> RunStory | None:
    """Everything the relay holds about one dbt run, oldest first; None if it holds nothing."""
    run_id = storable(run_id)
    events_of_run, jobs_of_run = store.run_story(run_id)
    lineage = lineage_jobs_of_run(store, run_id)
    if not events_of_run and not lineage:
        return None
    return RunStory(run_id, events_of_run, lineage, jobs_of_run)


def decisions_of(explanation: str) -> list[Decision]:
    """A lineage job's stored decisions read back; anything malformed is a LineageError."""
    return from_json(_loads(explanation))


def decision_of(explanation: str) -> Decision:
    """The one decision stored with a lineage-made refresh job; malformed is a LineageError."""
    [decision] = from_json([_loads(explanation)])
    return decision


def _loads(explanation: str) -> object:
    try:
        return json.loads(explanation)
    except ValueError as exc:
        raise LineageError(f"not JSON: {exc}") from None


def item_path(job: RefreshJob) -> str:
    """The item's `Project/Name`: its target, or for a lineage-made job (by LUID) its decision's."""
    if job.explanation and job.target_by == "luid":
        try:
            return decision_of(job.explanation).item.path
        except LineageError:
            return job.target_ref
    return job.target_ref
