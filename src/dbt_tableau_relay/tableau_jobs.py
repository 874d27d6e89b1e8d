"""Tableau background jobs as the relay sees them, and finding a refresh it did not record.

`TableauJob` is one job (Query Job, `GET .../jobs/{id}`). Query Jobs
(`GET .../jobs?filter=...`, site administrators only) lists background jobs
with `title` (the item's name), `subtitle` (Workbook / Data Source),
`jobType` and `createdAt`; `refresh_query` and `refresh_candidates` find,
among them, the refreshes of one item created since a moment, which are then
confirmed by the item LUID that Query Job names. That is how a refresh sent
by a worker killed before it recorded Tableau's 202 is found again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import tableauserverclient as TSC

from dbt_tableau_relay.targets import Item

PAGE_SIZE = 1000  # Tableau's maximum
FULL_REFRESH = "refresh_extracts"
REFRESH_JOB_TYPES = frozenset({FULL_REFRESH, "increment_extracts"})
# Tableau writes createdAt in whole seconds, truncated: a refresh created at
# 10.9 s reads 10 s. One more second for the relay's and Tableau's clocks.
CLOCK_SKEW = timedelta(seconds=2)
# Query Job's finishCode; any other (1) failed. 3 is "completed", for bridge jobs.
FINISH_SUCCESS, FINISH_CANCELLED, FINISH_COMPLETED = 0, 2, 3
SUCCEEDED_CODES = (FINISH_SUCCESS, FINISH_COMPLETED)


@dataclass(frozen=True)
class TableauJob:
    """A Tableau background job, as far as the relay needs it."""

    id: str
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    finish_code: int | None = None
    progress: int | None = None
    notes: tuple[str, ...] = ()
    item_luid: str | None = None  # the workbook or data source it refreshes

    @property
    def finished(self) -> bool:
        return self.completed_at is not None

    @property
    def succeeded(self) -> bool:
        return self.finished and self.finish_code in SUCCEEDED_CODES

    @property
    def outcome(self) -> str:
        if not self.finished:
            return "in progress" if self.started_at else "queued"
        code = self.finish_code or FINISH_SUCCESS
        if code in SUCCEEDED_CODES:
            return "succeeded"
        return "cancelled" if code == FINISH_CANCELLED else "failed"

    @classmethod
    def from_tsc(cls, job: Any) -> TableauJob:
        progress = getattr(job, "progress", None)
        return cls(
            id=job.id,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            finish_code=job.finish_code if job.completed_at else None,
            progress=int(progress) if progress not in (None, "") else None,
            notes=tuple(n for n in (job.notes or ()) if n),
            item_luid=getattr(job, "workbook_id", None) or getattr(job, "datasource_id", None),
        )


def refresh_query(item: Item, since: datetime, *, incremental: bool) -> Any:
    """Query Jobs options: refreshes titled with the item's name, created at or after `since`.

    Only `eq` and `gt` are used (what every Tableau version filters on). A
    name holding `,` or `:` cannot be written in a filter, and an incremental
    refresh's jobType is not `refresh_extracts`: those are left to
    `refresh_candidates`, which checks every field again.
    """
    options = TSC.RequestOptions(pagesize=PAGE_SIZE)  # type: ignore[no-untyped-call]
    op = TSC.RequestOptions.Operator
    after = _whole_second(since - CLOCK_SKEW) - timedelta(seconds=1)
    clauses = [TSC.Filter("createdAt", op.GreaterThan, after)]  # type: ignore[no-untyped-call]
    if not incremental:
        clauses.append(TSC.Filter("jobType", op.Equals, FULL_REFRESH))  # type: ignore[no-untyped-call]
    if not set(item.name) & {",", ":"}:
        clauses.append(TSC.Filter("title", op.Equals, item.name))  # type: ignore[no-untyped-call]
    options.filter.update(clauses)
    return options


def refresh_candidates(listed: Iterable[Any], item: Item, since: datetime) -> list[str]:
    """Ids of the listed jobs that may be a refresh of `item` since `since`, oldest first."""
    earliest = _whole_second(since - CLOCK_SKEW)
    kept = [
        job
        for job in listed
        if job.type in REFRESH_JOB_TYPES
        and job.title == item.name
        and _kind_of(job.subtitle) in (None, item.kind)
        and job.created_at is not None
        and job.created_at >= earliest
    ]
    return [job.id for job in sorted(kept, key=lambda job: job.created_at)]


def _kind_of(subtitle: str | None) -> str | None:
    """ "Workbook" -> workbook, "Data Source" -> datasource; None when Tableau did not say."""
    if not subtitle:
        return None
    return subtitle.replace(" ", "").lower()


def _whole_second(at: datetime) -> datetime:
    return at.replace(microsecond=0)
