"""The lineage queue: claiming lineage jobs under a lease, and their transitions.

    queued ──claim──▶ resolving ──decided──▶ done     (refresh jobs queued for each
      ▲                   │                            `refresh` decision, in the same
      └── transient ──────┘                            transaction as `done`)
          error            ──permanent error──▶ failed    ──retries exhausted──▶ dead

A lineage job never calls Tableau's refresh itself: it turns the run's
decisions into ordinary refresh jobs (by LUID), which then coalesce, honour
the 409093 freshness rule, retry and dead-letter like any other. Each carries
the decision that made it (`explanation`), and the lineage job keeps all of
them, the skipped items too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import insert, literal, select, update
from sqlalchemy.orm import Session

from dbt_tableau_relay.config import WORKER_DEFAULTS, LineageSource
from dbt_tableau_relay.lineage.explain import to_json
from dbt_tableau_relay.lineage.model import Decision
from dbt_tableau_relay.runs import LineageJob, LineageJobEvent, due_lineage
from dbt_tableau_relay.store import (
    RefreshJobEvent,
    Store,
    queued_job_row,
    queued_job_upsert,
    utcnow,
)

log = logging.getLogger(__name__)

LJ = LineageJob
FINAL = ("done", "failed", "dead")


@dataclass(frozen=True)
class ClaimedLineage:
    id: int
    run_id: str
    rule_name: str
    sources: tuple[LineageSource, ...]
    wait: bool
    incremental: bool
    attempts: int
    last_event_at: datetime

    @classmethod
    def of(cls, row: LineageJob) -> ClaimedLineage:
        sources = cast(tuple[LineageSource, ...], tuple(row.sources.split(",")))
        return cls(
            row.id,
            row.run_id,
            row.rule_name,
            sources,
            row.wait,
            row.incremental,
            row.attempts,
            row.last_event_at,
        )


class LineageQueue:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        lease: float = WORKER_DEFAULTS.lease_seconds,
        *,
        max_attempts: int | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.lease = timedelta(seconds=lease)
        self.max_attempts = max_attempts

    def claim(self, limit: int) -> list[ClaimedLineage]:
        """Take up to `limit` due lineage jobs (queued, or resolving under a lapsed lease)."""
        now = utcnow()
        pick = select(LJ.id).where(due_lineage(now)).order_by(LJ.not_before).limit(limit)
        with self.store.session(readonly=True) as session:
            if not session.scalars(pick).first():
                return []
        with self.store.session() as session:
            ids = list(session.scalars(pick.with_for_update(skip_locked=True)))
            ids = [i for i in ids if i not in self._bury_crashed(session, ids, now)]
            if not ids:
                return []
            session.execute(
                update(LJ)
                .where(LJ.id.in_(ids))
                .values(
                    state="resolving",
                    attempts=LJ.attempts + 1,
                    lease_until=now + self.lease,
                    claimed_by=self.worker_id,
                    updated_at=now,
                )
            )
            return [ClaimedLineage.of(r) for r in session.scalars(select(LJ).where(LJ.id.in_(ids)))]

    def _bury_crashed(self, session: Session, ids: list[int], now: datetime) -> set[int]:
        """Dead-letter the lineage jobs among `ids` taken back after `max_attempts` crashes.

        A `resolving` job is due again only because its worker crashed or died
        mid-resolution; without a bound, a run whose artifacts crash the
        resolver would be resolved at every lease, forever.
        """
        if self.max_attempts is None:
            return set()
        spent = select(LJ.id).where(
            LJ.id.in_(ids), LJ.state == "resolving", LJ.attempts >= self.max_attempts
        )
        buried = set(session.scalars(spent))
        if buried:
            error = f"{self.max_attempts} attempts interrupted (worker.max_attempts)"
            session.execute(
                update(LJ)
                .where(LJ.id.in_(buried))
                .values(state="dead", error=error, finished_at=now, lease_until=None)
                .values(updated_at=now)
            )
            log.error("lineage.dead", extra={"lineage_jobs": sorted(buried), "error": error})
        return buried

    def done(self, job: ClaimedLineage, decisions: Sequence[Decision]) -> list[int]:
        """Queue a refresh job for each `refresh` decision; keep every decision. Their ids."""
        now = utcnow()
        with self.store.session() as session:
            if not self._guarded(
                session,
                job,
                state="done",
                finished_at=now,
                updated_at=now,
                explanation=json.dumps(to_json(decisions)),
                error=None,
                lease_until=None,
            ):
                return []
            refreshes = [d for d in decisions if d.action == "refresh"]
            ids = [self._queue_refresh(session, job, d, now) for d in refreshes]
        log.info(
            "lineage.decided",
            extra={
                "lineage_job": job.id,
                "run_id": job.run_id,
                "rule": job.rule_name,
                "refresh": len(refreshes),
                "skip": len(decisions) - len(refreshes),
                "refresh_jobs": ids,
            },
        )
        return ids

    def retry_later(self, job: ClaimedLineage, delay: float, error: str) -> None:
        now = utcnow()
        with self.store.session() as session:
            self._guarded(
                session,
                job,
                state="queued",
                error=error,
                lease_until=None,
                not_before=now + timedelta(seconds=delay),
                updated_at=now,
            )

    def fail(self, job: ClaimedLineage, error: str, *, dead: bool = False) -> None:
        now = utcnow()
        with self.store.session() as session:
            self._guarded(
                session,
                job,
                state="dead" if dead else "failed",
                error=error,
                finished_at=now,
                lease_until=None,
                updated_at=now,
            )

    def _queue_refresh(
        self, session: Session, job: ClaimedLineage, decision: Decision, now: datetime
    ) -> int:
        """Join or create the item's queued refresh job; it serves the lineage job's events."""
        row = _refresh_row(job, decision, now)
        refresh_id: int = session.execute(queued_job_upsert(self.store.dialect), row).one()[0]
        already = select(RefreshJobEvent.event_pk).where(
            RefreshJobEvent.refresh_job_id == refresh_id
        )
        events = select(literal(refresh_id), LineageJobEvent.event_pk).where(
            LineageJobEvent.lineage_job_id == job.id, LineageJobEvent.event_pk.notin_(already)
        )
        session.execute(insert(RefreshJobEvent).from_select(["refresh_job_id", "event_pk"], events))
        return refresh_id

    def _guarded(self, session: Session, job: ClaimedLineage, **values: Any) -> bool:
        """Update the job only while this worker still holds it."""
        result = session.execute(
            update(LJ)
            .where(LJ.id == job.id, LJ.claimed_by == self.worker_id, LJ.state.notin_(FINAL))
            .values(**values)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            log.warning("lineage.lease_lost", extra={"lineage_job": job.id})
            return False
        return True


def _refresh_row(job: ClaimedLineage, decision: Decision, now: datetime) -> dict[str, Any]:
    item = decision.item
    return queued_job_row(
        kind=item.kind,
        by="luid",
        ref=item.luid,
        key=f"{item.kind}:luid:{item.luid}",
        rule_name=job.rule_name,
        incremental=job.incremental,
        wait=job.wait,
        last_event_at=job.last_event_at,
        now=now,
        explanation=json.dumps(to_json([decision])[0]),
    )
