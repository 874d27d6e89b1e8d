"""Extract-refresh jobs and their lifecycle.

A job's state is worked out from the clock when it is read, not pushed by a
background thread: it is queued for the first quarter of `duration` (no
startedAt), then in progress with rising progress, then complete (completedAt
and finishCode from the item's refresh outcome). A cancel completes it at once
with finishCode 2.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from dbt_tableau_relay.emulators.tableau.content import Item, ItemKind, RefreshOutcome

_QUEUED_SHARE = 0.25


@dataclass(frozen=True)
class JobView:
    """A read-only snapshot of one job at one moment."""

    id: str
    item_kind: ItemKind
    item_luid: str
    item_name: str
    incremental: bool
    created_at: float
    started_at: float | None
    completed_at: float | None
    progress: int
    finish_code: int | None
    notes: str | None

    @property
    def finished(self) -> bool:
        return self.completed_at is not None


@dataclass
class Job:
    id: str
    item_kind: ItemKind
    item_luid: str
    item_name: str
    incremental: bool
    created_at: float
    duration: float
    outcome: RefreshOutcome
    cancelled_at: float | None = None

    def view(self, now: float) -> JobView:
        start = self.created_at + self.duration * _QUEUED_SHARE
        end = self.created_at + self.duration
        if self.cancelled_at is not None and self.cancelled_at < end:
            return self._cancelled_view(start)
        if now >= end:
            return self._snapshot(start, end, 100, self.outcome.finish_code, self.outcome.notes)
        if now >= start:
            share = (now - start) / (end - start) if end > start else 1.0
            return self._snapshot(start, None, min(99, int(share * 100)), None, None)
        return self._snapshot(None, None, 0, None, None)

    def _cancelled_view(self, start: float) -> JobView:
        cancelled = self.cancelled_at or self.created_at
        started = start if start <= cancelled else None
        return self._snapshot(started, cancelled, 0, 2, None)

    def _snapshot(
        self,
        started: float | None,
        completed: float | None,
        progress: int,
        finish_code: int | None,
        notes: str | None,
    ) -> JobView:
        return JobView(
            self.id,
            self.item_kind,
            self.item_luid,
            self.item_name,
            self.incremental,
            self.created_at,
            started,
            completed,
            progress,
            finish_code,
            notes,
        )


class JobBoard:
    """All jobs of the site. Not locked: callers lock."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def create(self, item: Item, *, incremental: bool, duration: float) -> JobView:
        now = time.time()
        job = Job(
            str(uuid.uuid4()),
            item.kind,
            item.luid,
            item.name,
            incremental,
            now,
            max(0.0, duration),
            item.outcome,
        )
        self._jobs[job.id] = job
        return job.view(now)

    def get(self, job_id: str) -> JobView | None:
        job = self._jobs.get(job_id.lower())
        return job.view(time.time()) if job else None

    def active_for(self, item_luid: str) -> JobView | None:
        """The queued or running refresh of this item, if any."""
        now = time.time()
        for job in self._jobs.values():
            view = job.view(now)
            if job.item_luid == item_luid and not view.finished:
                return view
        return None

    def complete(self, job_id: str) -> JobView | None:
        """End a job that has not finished now, as its item's refreshes end; None if it has."""
        job = self._jobs.get(job_id.lower())
        now = time.time()
        if job is None or job.view(now).finished:
            return None
        job.duration = now - job.created_at
        return job.view(now)

    def cancel(self, job_id: str) -> JobView | None:
        """Cancel a job that has not finished; None if it has (or is unknown)."""
        job = self._jobs.get(job_id.lower())
        now = time.time()
        if job is None or job.view(now).finished:
            return None
        job.cancelled_at = now
        return job.view(now)

    def views(self) -> tuple[JobView, ...]:
        now = time.time()
        return tuple(job.view(now) for job in self._jobs.values())

    def clear(self) -> None:
        self._jobs.clear()
