"""Replay: refresh a failed or dead job's item again, for the same events.

A replay (dashboard, admin API, `dbt-tableau-relay replay`) never revives the
old job: a job's history stays what happened. Its events are handed to a
queued job of the item, created for them unless one is already waiting, so
the replayed refresh too starts after every event it serves.
`RefreshQueue.replay` and `RefreshQueue.unreplayed` are the entry points.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import insert, literal, select
from sqlalchemy.orm import Session

from dbt_tableau_relay.errors import NotReplayableError, UnknownJobError
from dbt_tableau_relay.states import REPLAYABLE_STATES, JobState
from dbt_tableau_relay.store import (
    Attempt,
    RefreshJob,
    RefreshJobEvent,
    Store,
    queued_job_row,
    queued_job_upsert,
    utcnow,
)

log = logging.getLogger("dbt_tableau_relay.queue")

RJ = RefreshJob


def replay_job(store: Store, job_id: int, by: str) -> int:
    """Refresh a failed or dead job's item again for its events; the id of the job that will.

    That is a new queued job with the old one's rule, options and
    `last_event_at`, or the item's queued job if one is waiting (the
    events join it, as they would have had they arrived now). The old job
    keeps its state and history, plus an attempt 'replayed' naming the job.
    """
    now = utcnow()
    with store.session() as session:
        old = session.scalar(select(RJ).where(RJ.id == job_id).with_for_update())
        if old is None:
            raise UnknownJobError(f"refresh job {job_id} does not exist")
        if old.state not in REPLAYABLE_STATES:
            raise NotReplayableError(
                f"refresh job {job_id} is {old.state}: only failed or dead jobs can be replayed"
            )
        row = session.execute(queued_job_upsert(store.dialect), _replay_row(old, now))
        new_id: int = row.one()[0]
        link_events(session, old.id, new_id)
        session.add(_replayed_note(old, new_id, now))
        old.replayed_as, old.updated_at = new_id, now
    log.info("refresh.replayed", extra={"job_id": job_id, "as": new_id, "by": by})
    return new_id


def unreplayed(store: Store, state: JobState = JobState.DEAD) -> list[int]:
    """Ids of the jobs in `state` that were never replayed, oldest first."""
    query = select(RJ.id).where(RJ.state == state, RJ.replayed_as.is_(None)).order_by(RJ.id)
    with store.session(readonly=True) as session:
        return list(session.scalars(query))


def link_events(session: Session, from_job: int, to_job: int) -> None:
    """`to_job` serves `from_job`'s events too (those it does not already serve)."""
    already = select(RefreshJobEvent.event_pk).where(RefreshJobEvent.refresh_job_id == to_job)
    events = select(RefreshJobEvent.event_pk).where(
        RefreshJobEvent.refresh_job_id == from_job, RefreshJobEvent.event_pk.notin_(already)
    )
    session.execute(
        insert(RefreshJobEvent).from_select(
            ["refresh_job_id", "event_pk"],
            select(literal(to_job), events.subquery().c.event_pk),
        )
    )


def _replay_row(old: RefreshJob, now: datetime) -> dict[str, Any]:
    """The queued job that replays `old`: same item, rule, options and newest event time."""
    return queued_job_row(
        kind=old.target_kind,
        by=old.target_by,
        ref=old.target_ref,
        key=old.target_key,
        rule_name=old.rule_name,
        incremental=old.incremental,
        wait=old.wait,
        last_event_at=old.last_event_at,
        now=now,
    )


def _replayed_note(old: RefreshJob, new_id: int, now: datetime) -> Attempt:
    """The attempt that records on `old` which job its replay handed its events to."""
    return Attempt(
        refresh_job_id=old.id,
        number=old.attempts,
        started_at=now,
        finished_at=now,
        outcome="replayed",
        message=f"replayed as refresh job {new_id}",
    )
