"""Reconciliation: a run whose webhook never came is processed as if it had.

dbt Cloud gives up on a delivery after its retries and keeps no way to send
it again, so a relay that was down (or unreachable) longer than that has
lost those runs. With `dbt.cloud.reconcile_seconds` set, the relay lists the
recently finished runs of the jobs its rules watch, and records every one it
has no finished-run event for as the event dbt would have sent (with an
`eventId` of its own, `reconciled:RUN:KIND`). From there it is an ordinary
event: rules, lineage jobs, refreshes. A late webhook for the same run is
then a repeat of a run already processed (`runs.py`): one run, one set of
refreshes.

The first start remembers the time and replays nothing older. With several
replicas one holds the `reconcile` lease and polls; the others skip.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select

from dbt_tableau_relay.config import Rule
from dbt_tableau_relay.dbt_cloud import DbtCloudClient, Run, RunStatus
from dbt_tableau_relay.events import parse_event
from dbt_tableau_relay.periodic import Periodic
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.rules import match, match_lineage
from dbt_tableau_relay.runs import read_state, take_lease, write_state
from dbt_tableau_relay.samples import dbt_timestamp
from dbt_tableau_relay.store import Event, Store, utcnow

log = logging.getLogger(__name__)

LEASE: Final = "reconcile"
CURSOR: Final = "reconcile.since"
# dbt's clock and ours may disagree, and a run's finish may be written late.
OVERLAP: Final = timedelta(minutes=5)
MAX_PAGES: Final = 10  # of 100 runs per scope and cycle
FINISHED_EVENTS: Final = ("job.run.completed", "job.run.errored")

Scope = tuple[tuple[str, str], ...]  # the list filters of one rule: (("job_id", "123"),)


class Reconciler(Periodic):
    """Polls the Admin API every `every` seconds on a thread of its own."""

    name = "reconcile"

    def __init__(
        self,
        store: Store,
        client: DbtCloudClient,
        rules: Sequence[Rule],
        *,
        every: float,
        holder: str,
        on_recorded: Callable[[], None] = lambda: None,
    ) -> None:
        self.store, self.client, self.rules = store, client, tuple(rules)
        self.every, self.holder, self.on_recorded = every, holder, on_recorded
        super().__init__()

    def run_once(self) -> list[str]:
        """One cycle: the ids of the runs recorded because no webhook had come for them."""
        if not take_lease(self.store, LEASE, self.holder, seconds=3 * self.every):
            return []
        started = utcnow()
        since = read_state(self.store, CURSOR)
        if since is None:  # first start: from now on, nothing older
            write_state(self.store, CURSOR, started.isoformat())
            log.info("reconcile.started", extra={"since": started.isoformat()})
            return []
        missed = self._missed(self._finished_since(datetime.fromisoformat(since) - OVERLAP))
        recorded = self._record(missed)
        write_state(self.store, CURSOR, started.isoformat())
        if recorded:
            log.warning("reconcile.recorded", extra={"runs": recorded})
            self.on_recorded()
        return recorded

    def _finished_since(self, since: datetime) -> list[Run]:
        runs: dict[int, Run] = {}
        for scope in scopes(self.rules):
            for run in self._list(dict(scope), since):
                runs[run.id] = run
        return sorted(runs.values(), key=lambda r: r.id)

    def _list(self, filters: dict[str, str], since: datetime) -> Iterable[Run]:
        """A scope's runs that finished after `since`, newest first, page by page."""
        for page in range(MAX_PAGES):
            runs = self.client.list_runs(offset=page * 100, limit=100, **filters)  # type: ignore[arg-type]
            yield from (r for r in runs if r.finished_at is not None and r.finished_at > since)
            created = [r.created_at for r in runs if r.created_at is not None]
            if len(runs) < 100 or (created and min(created) < since - timedelta(days=1)):
                return

    def _missed(self, runs: list[Run]) -> list[Run]:
        """The finished runs without a finished-run event in the store."""
        if not runs:
            return []
        ids = [str(r.id) for r in runs]
        query = select(Event.run_id).where(
            Event.run_id.in_(ids), Event.event_type.in_(FINISHED_EVENTS)
        )
        with self.store.session(readonly=True) as session:
            seen = set(session.scalars(query))
        return [r for r in runs if str(r.id) not in seen and r.is_complete]

    def _record(self, runs: list[Run]) -> list[str]:
        submissions = [s for run in runs for s in submissions_for(run, self.rules)]
        if not submissions:
            return []
        with self.store.transaction() as conn:
            results = write_batch(conn, submissions)
        return sorted(
            {
                str(s.event.run_id)
                for s, r in zip(submissions, results, strict=True)
                if s.event is not None and r.status == "queued"
            }
        )


def scopes(rules: Iterable[Rule]) -> list[Scope]:
    """One list query per distinct filter of the rules that act on finished runs.

    A rule without job, environment or project ids watches every run: one
    unfiltered list covers it (and every other rule).
    """
    found: set[Scope] = set()
    for rule in rules:
        if rule.on.event == "job.run.started":
            continue
        on = rule.on
        if not (on.job_id or on.environment_id or on.project_id):
            return [()]
        if on.job_id:
            found |= {(("job_id", j),) for j in on.job_id}
        elif on.environment_id:
            found |= {(("environment_id", e),) for e in on.environment_id}
        else:
            found |= {(("project_id", p),) for p in on.project_id or ()}
    return sorted(found)


def submissions_for(run: Run, rules: Sequence[Rule]) -> list[Submission]:
    """The events dbt would have sent for a finished run: `completed`; `errored` if it failed."""
    kinds = ["completed"] + (["errored"] if run.status == RunStatus.ERROR else [])
    subs = []
    for kind in kinds:
        body = reconciled_body(run, kind)
        event = parse_event(body)
        planned, lineage = match(rules, event), match_lineage(rules, event)
        if planned or lineage:
            subs.append(Submission(body, utcnow(), event, planned, lineage=lineage))
    return subs


def reconciled_body(run: Run, kind: str) -> bytes:
    """A dbt Cloud webhook body for `run`, as its `job.run.<kind>` event would have been."""
    finished = dbt_timestamp(run.finished_at)[:19] + "Z"
    data: dict[str, object] = {
        "jobId": str(run.job_id),
        "runId": str(run.id),
        "environmentId": str(run.environment_id) if run.environment_id else None,
        "projectId": str(run.project_id) if run.project_id else None,
        "runStatus": run.status_humanized or RunStatus(run.status).name.title(),
        "runStatusCode": int(run.status),
        "runStatusMessage": "Recorded by dbt-tableau-relay's reconciliation",
        "runReason": "No webhook arrived for this run",
        "runStartedAt": dbt_timestamp(run.started_at)[:19] + "Z" if run.started_at else None,
        ("runErroredAt" if kind == "errored" else "runFinishedAt"): finished,
    }
    body = {
        "accountId": run.account_id,
        "webhookId": "reconciliation",
        "eventId": f"reconciled:{run.id}:{kind}",
        "timestamp": dbt_timestamp(utcnow()),
        "eventType": f"job.run.{kind}",
        "webhookName": "dbt-tableau-relay reconciliation",
        "data": {k: v for k, v in data.items() if v is not None},
    }
    return json.dumps(body).encode()
