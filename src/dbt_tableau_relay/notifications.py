"""The notification outbox: one row per (finished refresh job, channel), sent by notifier.py.

    pending ──claim (leased)──▶ POST ──2xx──▶ sent
      ▲                          │
      └── 5xx, 408, 429, ────────┤──other answer, or attempts exhausted──▶ failed
          network error          └──channel no longer configured──────────▶ dropped

Rows are written by `enqueue`, inside the transaction that moves the refresh
job to failed, dead or succeeded (queue.py): a transition that commits has
its messages, one that rolls back (a lost lease) has none. Delivery is
at-least-once: a row is marked sent only after the receiver's 2xx, so a
notifier that dies between the two sends that message again once its lease
runs out. The plain JSON webhook carries the row's id so that receivers can
drop the repeat. Rows name the channel by its position in `notify:` and its
kind, never by URL: the URLs are secrets and stay in the settings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ForeignKey, Index, Integer, String, Text, and_, insert, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from dbt_tableau_relay.config import NotifyChannel
from dbt_tableau_relay.errors import MalformedEventError
from dbt_tableau_relay.events import parse_event
from dbt_tableau_relay.messages import MAX_RUNS, DbtRun, JobStory, job_url, run_url
from dbt_tableau_relay.states import JobState
from dbt_tableau_relay.store import Base, BigId, Event, RefreshJob, RefreshJobEvent, Store, utcnow

log = logging.getLogger(__name__)

NOTIFICATION_STATES: Final = ("pending", "sent", "failed", "dropped")
# The final states a channel may hear of (`notify: on:`).
TRIGGERS: Final = (JobState.FAILED, JobState.DEAD, JobState.SUCCEEDED)


class Notification(Base):
    """One message to send about one finished refresh job, to one channel."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_state_not_before", "state", "not_before"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    refresh_job_id: Mapped[int] = mapped_column(BigId, ForeignKey("refresh_jobs.id"), index=True)
    channel: Mapped[int] = mapped_column(Integer)  # its index in `notify:`
    channel_kind: Mapped[str] = mapped_column(String(16))  # slack, teams or webhook
    trigger: Mapped[str] = mapped_column(String(16))  # the job's final state: failed, dead, ...
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


@dataclass(frozen=True)
class Route:
    """Which triggers one channel wants: all `enqueue` needs to know (no URL, no secret)."""

    channel: int
    kind: str
    on: frozenset[str]


def routes_of(channels: Sequence[NotifyChannel]) -> tuple[Route, ...]:
    return tuple(Route(i, c.kind, frozenset(c.on)) for i, c in enumerate(channels))


def enqueue(
    session: Session, job_id: int, trigger: str, routes: Sequence[Route], now: datetime
) -> int:
    """Queue the messages about `job_id` reaching `trigger`, in the caller's transaction."""
    rows = [
        {
            "refresh_job_id": job_id,
            "channel": r.channel,
            "channel_kind": r.kind,
            "trigger": trigger,
            "state": "pending",
            "attempts": 0,
            "not_before": now,
            "created_at": now,
        }
        for r in routes
        if trigger in r.on
    ]
    if rows:
        session.execute(insert(Notification), rows)
    return len(rows)


@dataclass(frozen=True)
class ClaimedNotification:
    id: int
    refresh_job_id: int
    channel: int
    channel_kind: str
    trigger: str
    attempts: int  # this one included

    @classmethod
    def of(cls, row: Notification) -> ClaimedNotification:
        return cls(
            row.id, row.refresh_job_id, row.channel, row.channel_kind, row.trigger, row.attempts
        )


N = Notification


class Outbox:
    """Claims due notifications under a lease, and records how each delivery went."""

    def __init__(self, store: Store, holder: str, lease: float = 120.0) -> None:
        self.store = store
        self.holder = holder
        self.lease = timedelta(seconds=lease)

    def claim(self, limit: int) -> list[ClaimedNotification]:
        """Up to `limit` pending notifications that are due and not leased by a live sender."""
        now = utcnow()
        due = and_(
            N.state == "pending",
            N.not_before <= now,
            or_(N.lease_until.is_(None), N.lease_until < now),
        )
        pick = select(N.id).where(due).order_by(N.not_before, N.id).limit(limit)
        with self.store.session(readonly=True) as session:
            if not session.scalars(pick).first():
                return []  # the common idle case takes no write lock
        with self.store.session() as session:
            ids = list(session.scalars(pick.with_for_update(skip_locked=True)))
            if not ids:
                return []
            session.execute(
                update(N)
                .where(N.id.in_(ids))
                .values(
                    attempts=N.attempts + 1, lease_until=now + self.lease, claimed_by=self.holder
                )
            )
            rows = session.scalars(select(N).where(N.id.in_(ids)).order_by(N.id))
            return [ClaimedNotification.of(row) for row in rows]

    def sent(self, note: ClaimedNotification) -> bool:
        return self._guarded(note, state="sent", sent_at=utcnow(), lease_until=None)

    def retry_later(self, note: ClaimedNotification, delay: float, error: str) -> bool:
        not_before = utcnow() + timedelta(seconds=delay)
        return self._guarded(note, not_before=not_before, lease_until=None, last_error=error)

    def give_up(self, note: ClaimedNotification, error: str, state: str = "failed") -> bool:
        return self._guarded(note, state=state, lease_until=None, last_error=error)

    def _guarded(self, note: ClaimedNotification, **values: Any) -> bool:
        """Update the row only while this sender still holds it."""
        with self.store.session() as session:
            result = session.execute(
                update(N)
                .where(N.id == note.id, N.claimed_by == self.holder, N.state == "pending")
                .values(**values)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            log.warning("notify.lease_lost", extra={"notification": note.id})
            return False
        return True


def notifications_of(store: Store, job_id: int) -> list[Notification]:
    """A refresh job's notifications, oldest first."""
    query = select(N).where(N.refresh_job_id == job_id).order_by(N.id)
    with store.session(readonly=True) as session:
        return list(session.scalars(query))


# -- what a message tells, read from the store ---------------------------------------


def load_story(
    store: Store,
    job_id: int,
    outcome: str,
    *,
    public_url: str | None = None,
    dbt_url: str | None = None,
) -> JobStory | None:
    """The facts of a finished job for its message; None if the job is gone."""
    events = (
        select(Event)
        .join(RefreshJobEvent, RefreshJobEvent.event_pk == Event.id)
        .where(RefreshJobEvent.refresh_job_id == job_id, Event.run_id.is_not(None))
        .order_by(Event.id)
    )
    with store.session(readonly=True) as session:
        job = session.get(RefreshJob, job_id)
        if job is None:
            return None
        runs = _runs(session.scalars(events), dbt_url)
    return JobStory(
        job_id=job.id,
        outcome=outcome,
        kind=job.target_kind,
        path=job.target_ref if job.target_by == "path" else _explained_path(job.explanation),
        luid=job.item_luid or (job.target_ref if job.target_by == "luid" else None),
        rule=job.rule_name,
        attempts=job.attempts,
        tableau_job_id=job.tableau_job_id,
        finish_code=job.finish_code,
        error_code=job.error_code,
        message=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
        runs=tuple(runs[:MAX_RUNS]),
        more_runs=max(0, len(runs) - MAX_RUNS),
        link=job_url(public_url, job.id),
    )


def _runs(events: Iterable[Event], dbt_url: str | None) -> list[DbtRun]:
    """One entry per dbt run, newest last, described by its latest event."""
    by_run: dict[str, DbtRun] = {}
    for event in events:
        assert event.run_id is not None
        by_run.pop(event.run_id, None)  # a later event of the run describes it better
        run = _described(event)
        by_run[event.run_id] = replace(run, url=run_url(dbt_url, run))
    return list(by_run.values())


def _described(event: Event) -> DbtRun:
    """The run as its stored webhook body tells it (names are not columns of `events`)."""
    assert event.run_id is not None
    run = DbtRun(
        event.run_id,
        job_id=event.job_id,
        account_id=event.account_id,
        project_id=event.project_id,
    )
    try:
        parsed = parse_event(event.body.encode())
    except MalformedEventError:
        return run
    return replace(
        run, job_name=parsed.job_name, project_name=parsed.project_name, status=parsed.run_status
    )


def _explained_path(explanation: str | None) -> str | None:
    """A lineage-made job names its item by LUID; its decision knows the item's path."""
    try:
        decision = json.loads(explanation or "null")
    except ValueError:
        return None
    path = decision.get("path") if isinstance(decision, dict) else None
    return path if isinstance(path, str) else None
