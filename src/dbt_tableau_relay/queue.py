"""The refresh queue: claiming due jobs under a lease, and every job transition.

A refresh job moves through these states:

    queued ──claim──▶ sending ──202──▶ following ──finish code──▶ succeeded | failed
      ▲                  │                  │
      └──── 409093, ─────┘                  └── (polled: claimed, polled once, released)
            transient error
    sending ──permanent error──▶ failed        sending ──retries exhausted──▶ dead
    sending, lease expired ──claim (resumed)──▶ its unrecorded refresh found ──▶ following
    queued job that meets another queued job of the same item ──▶ merged
    failed | dead ──replay──▶ kept as it was, plus an attempt 'replayed'; its events go to
                              a NEW queued job of the item, or join the item's queued job

New events join a job only while it is `queued`, and a job is claimed before
it is sent, so every refresh Tableau accepts (202) started after all the
events it serves arrived. A queued job is not claimed while another job of
its item is `sending` or `following`: the relay never sends a refresh into
its own running one (which would only earn a 409093). Every transition is
guarded by the lease (`claimed_by`): a worker whose lease ran out and was
taken over changes nothing. A `sending` job claimed again after its lease
ran out is `resumed`: the worker first looks for the refresh it may have
sent unrecorded (worker.py, `adopted`). Replays live in replay.py.

A transition to a final state also queues the job's notifications
(notifications.py) in its own transaction, and counts it in
`relay_refreshes_total` once committed. A claimed job carries the dbt run ids
of its events (`runs`), which every `refresh.*` log line names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, event, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from dbt_tableau_relay.config import WORKER_DEFAULTS, Target
from dbt_tableau_relay.errors import TableauError
from dbt_tableau_relay.metrics import REFRESHES
from dbt_tableau_relay.notifications import Route, enqueue
from dbt_tableau_relay.replay import link_events, replay_job, unreplayed
from dbt_tableau_relay.states import FINAL_STATES as FINAL_STATES
from dbt_tableau_relay.states import IN_FLIGHT, JobState
from dbt_tableau_relay.states import REPLAYABLE_STATES as REPLAYABLE_STATES
from dbt_tableau_relay.store import Attempt, Event, RefreshJob, RefreshJobEvent, Store, fit, utcnow

log = logging.getLogger(__name__)

RJ = RefreshJob
# Attempt outcomes that count toward worker.max_attempts.
FAILED_ATTEMPTS = ("transient", "interrupted")
CRASHED = "its worker crashed or stopped before recording an outcome (see refresh.crashed)"


@dataclass(frozen=True)
class ClaimedJob:
    """A detached snapshot of a claimed job: what the worker needs to act on it."""

    id: int
    state: JobState  # sending or following
    target: Target
    rule_name: str
    incremental: bool
    wait: bool
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    tableau_job_id: str | None
    item_luid: str | None
    claimed_at: datetime
    target_key: str
    last_event_at: datetime
    # Claimed again after its worker died mid-send: a refresh may have been sent unrecorded.
    resumed: bool = False
    runs: tuple[str, ...] = ()  # the dbt run ids of the job's events, oldest first

    @property
    def log_fields(self) -> dict[str, Any]:
        """What every log line about the job names: one grep of a run id finds them all."""
        return {"job_id": self.id, "runs": ",".join(self.runs)}

    @classmethod
    def of(
        cls,
        row: RefreshJob,
        claimed_at: datetime,
        *,
        resumed: bool = False,
        runs: tuple[str, ...] = (),
    ) -> ClaimedJob:
        return cls(
            id=row.id,
            state=JobState(row.state),
            target=target_of(row.target_kind, row.target_by, row.target_ref),
            rule_name=row.rule_name,
            incremental=row.incremental,
            wait=row.wait,
            attempts=row.attempts,
            created_at=row.created_at,
            sent_at=row.sent_at,
            tableau_job_id=row.tableau_job_id,
            item_luid=row.item_luid,
            claimed_at=claimed_at,
            target_key=row.target_key,
            last_event_at=row.last_event_at,
            resumed=resumed,
            runs=runs,
        )


def _item_in_flight() -> Any:
    """Another job of the same item is being sent or followed (correlated with the outer row)."""
    other = aliased(RJ)
    return (
        select(other.id)
        .where(other.target_key == RJ.target_key, other.state.in_(IN_FLIGHT))
        .exists()
    )


def runs_of(session: Session, job_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """The distinct dbt run ids of each job's events, oldest first."""
    query = (
        select(RefreshJobEvent.refresh_job_id, Event.run_id)
        .join(Event, Event.id == RefreshJobEvent.event_pk)
        .where(RefreshJobEvent.refresh_job_id.in_(job_ids))
        .order_by(Event.id)
    )
    found: dict[int, dict[str, None]] = {}
    for job_id, run_id in session.execute(query):
        if run_id is not None:  # an invalid body has no run; it never has a job either
            found.setdefault(job_id, {})[run_id] = None
    return {job_id: tuple(runs) for job_id, runs in found.items()}


def target_of(kind: str, by: str, ref: str) -> Target:
    field = f"{kind}_id" if by == "luid" else kind
    return Target.model_validate({field: ref})


class RefreshQueue:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        lease: float = WORKER_DEFAULTS.lease_seconds,
        notify: Sequence[Route] = (),
        *,
        max_attempts: int | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.lease = timedelta(seconds=lease)
        # A job interrupted this often (its worker crashed or died each time) is dead.
        self.max_attempts = max_attempts
        self.notify = tuple(notify)  # which channels hear of which final states

    # -- claiming -----------------------------------------------------------------

    def claim(self, limit: int) -> list[ClaimedJob]:
        """Take up to `limit` due jobs: queued ones, follow-ups, and expired leases.

        A queued job is not due while the relay's own refresh of its item is
        in flight (another job of the item `sending` or `following`): sent
        then, it would only meet 409093 from that refresh. It is claimed once
        that one has ended, so it still starts after all its events.
        """
        now = utcnow()
        due = or_(
            and_(RJ.state == JobState.QUEUED, RJ.not_before <= now, ~_item_in_flight()),
            and_(
                RJ.state == JobState.FOLLOWING,
                RJ.not_before <= now,
                or_(RJ.lease_until.is_(None), RJ.lease_until < now),
            ),
            and_(RJ.state == JobState.SENDING, RJ.lease_until < now),  # its worker died mid-send
        )
        pick = select(RJ.id).where(due).order_by(RJ.not_before).limit(limit)
        with self.store.session(readonly=True) as session:
            if not session.scalars(pick).first():
                return []  # the common idle case takes no write lock
        with self.store.session() as session:
            ids = list(session.scalars(pick.with_for_update(skip_locked=True)))
            buried = self._bury_crashed(session, ids, now)
            ids = [i for i in ids if i not in buried]
            if not ids:
                return []
            crashed = select(RJ.id).where(RJ.id.in_(ids), RJ.state == JobState.SENDING)
            resumed = set(session.scalars(crashed))
            session.execute(
                update(RJ)
                .where(RJ.id.in_(ids), RJ.state.in_((JobState.QUEUED, JobState.SENDING)))
                .values(state=JobState.SENDING, attempts=RJ.attempts + 1)
            )
            session.execute(
                update(RJ)
                .where(RJ.id.in_(ids))
                .values(lease_until=now + self.lease, claimed_by=self.worker_id, updated_at=now)
            )
            runs = runs_of(session, ids)
            rows = session.scalars(select(RJ).where(RJ.id.in_(ids)).order_by(RJ.id))
            return [
                ClaimedJob.of(row, now, resumed=row.id in resumed, runs=runs.get(row.id, ()))
                for row in rows
            ]

    def _bury_crashed(self, session: Session, ids: list[int], now: datetime) -> set[int]:
        """Note each interrupted job among `ids`; dead-letter those that used up their attempts.

        A `sending` job, or a `following` one still leased, is claimed again only
        because its worker crashed (`refresh.crashed`) or died before recording an
        outcome. Each such claim adds an attempt `interrupted`; with the transient
        failures, they count toward `max_attempts`, so a job that crashes every
        time ends `dead` instead of being sent again at every lease, forever.
        """
        taken_back = select(RJ.id, RJ.attempts).where(
            RJ.id.in_(ids),
            RJ.claimed_by.is_not(None),  # `hold` releases a job on purpose
            or_(
                RJ.state == JobState.SENDING,
                and_(RJ.state == JobState.FOLLOWING, RJ.lease_until.is_not(None)),
            ),
        )
        interrupted = session.execute(taken_back).all()
        if not interrupted:
            return set()
        failures = self._failures(session, [job_id for job_id, _ in interrupted])
        buried: set[int] = set()
        for job_id, attempts in interrupted:
            note = {"refresh_job_id": job_id, "number": attempts, "started_at": now}
            session.add(Attempt(**note, finished_at=now, outcome="interrupted", message=CRASHED))
            if self.max_attempts is not None and failures.get(job_id, 0) + 1 >= self.max_attempts:
                self._bury(session, job_id, note, failures.get(job_id, 0) + 1)
                buried.add(job_id)
        return buried

    def _bury(self, session: Session, job_id: int, note: dict[str, Any], failures: int) -> None:
        message = f"{failures} failed or interrupted attempts (worker.max_attempts): {CRASHED}"
        session.execute(
            update(RJ)
            .where(RJ.id == job_id)
            .values(
                state=JobState.DEAD, error=message, error_code=None, finished_at=note["started_at"]
            )
            .values(lease_until=None, updated_at=note["started_at"])
        )
        session.add(
            Attempt(**note, finished_at=note["started_at"], outcome="exhausted", message=message)
        )
        self._ended(session, job_id, JobState.DEAD, note["started_at"])
        log.error("refresh.dead", extra={"job_id": job_id, "error": message})

    @staticmethod
    def _failures(session: Session, job_ids: list[int]) -> dict[int, int]:
        """Transient failures and interruptions so far, per job."""
        query = (
            select(Attempt.refresh_job_id, func.count())
            .where(Attempt.refresh_job_id.in_(job_ids), Attempt.outcome.in_(FAILED_ATTEMPTS))
            .group_by(Attempt.refresh_job_id)
        )
        return dict(session.execute(query).all())

    # -- transitions ----------------------------------------------------------------

    def sent(
        self,
        job: ClaimedJob,
        tableau_job_id: str,
        item_luid: str,
        first_poll: float,
        outcome: str = "accepted",
    ) -> None:
        """Tableau accepted the refresh (202), or it was `adopted`: follow it, or finish."""
        now = utcnow()
        values: dict[str, Any] = {
            "tableau_job_id": tableau_job_id,
            "item_luid": item_luid,
            "sent_at": now,
            "error_code": None,
            "error": None,
        }
        if job.wait:
            values |= {
                "state": JobState.FOLLOWING,
                "not_before": now + timedelta(seconds=first_poll),
            }
        else:
            values |= {"state": JobState.SUCCEEDED, "finished_at": now}
        with self.store.session() as session:
            if self._guarded(session, job, **values, lease_until=None, updated_at=now):
                self._attempt(session, job, outcome, tableau_job_id=tableau_job_id, at=now)
                if not job.wait:
                    self._ended(session, job.id, JobState.SUCCEEDED, now)

    def poll_later(self, job: ClaimedJob, delay: float) -> None:
        """The Tableau job is still running: release it until the next poll."""
        now = utcnow()
        with self.store.session() as session:
            self._guarded(
                session,
                job,
                not_before=now + timedelta(seconds=delay),
                lease_until=None,
                updated_at=now,
            )

    def finished(
        self, job: ClaimedJob, finish_code: int | None, notes: str | None, succeeded: bool
    ) -> None:
        """Tableau's verdict on the refresh."""
        now = utcnow()
        state = JobState.SUCCEEDED if succeeded else JobState.FAILED
        with self.store.session() as session:
            done = self._guarded(
                session,
                job,
                state=state,
                finish_code=finish_code,
                error=None if succeeded else notes,
                error_code=None if succeeded else f"finishCode {finish_code}",
                finished_at=now,
                lease_until=None,
                updated_at=now,
            )
            if done:
                self._attempt(
                    session,
                    job,
                    state,
                    tableau_job_id=job.tableau_job_id,
                    finish_code=finish_code,
                    message=notes,
                    at=now,
                )
                self._ended(session, job.id, state, now)

    def fail(self, job: ClaimedJob, error: TableauError | str) -> None:
        """End the job `failed` without a Tableau verdict: a permanent error."""
        self._end_unanswered(job, error, JobState.FAILED, "permanent")

    def dead(self, job: ClaimedJob, error: TableauError | str) -> None:
        """End the job `dead`: its retries are exhausted."""
        self._end_unanswered(job, error, JobState.DEAD, "exhausted")

    def _end_unanswered(
        self, job: ClaimedJob, error: TableauError | str, state: JobState, outcome: str
    ) -> None:
        now = utcnow()
        code, message = _code_and_message(error)
        with self.store.session() as session:
            if self._guarded(
                session,
                job,
                state=state,
                error_code=code,
                error=message,
                finished_at=now,
                lease_until=None,
                updated_at=now,
            ):
                self._attempt(session, job, outcome, error_code=code, message=message, at=now)
                self._ended(session, job.id, state, now)

    def retry_later(self, job: ClaimedJob, delay: float, error: TableauError, outcome: str) -> None:
        """Back to `queued`, due after `delay`; joins the item's queued job if there is one."""
        try:
            self._requeue(job, delay, error, outcome)
        except IntegrityError:
            # PostgreSQL: a new queued job for the item appeared meanwhile. Once more, to merge.
            self._requeue(job, delay, error, outcome)

    def _requeue(self, job: ClaimedJob, delay: float, error: TableauError, outcome: str) -> None:
        now = utcnow()
        code, message = _code_and_message(error)
        with self.store.session() as session:
            key = session.scalar(select(RJ.target_key).where(RJ.id == job.id))
            other = session.scalar(
                select(RJ).where(RJ.target_key == key, RJ.state == JobState.QUEUED, RJ.id != job.id)
            )
            values: dict[str, Any] = {"error_code": code, "error": message, "lease_until": None}
            if other is not None:
                values |= {"state": JobState.MERGED, "finished_at": now}
            else:
                values |= {"state": JobState.QUEUED, "not_before": now + timedelta(seconds=delay)}
            if not self._guarded(session, job, **values, updated_at=now):
                return
            self._attempt(session, job, outcome, error_code=code, message=message, at=now)
            if other is not None:
                self._merge_into(session, job, other)
                self._ended(session, job.id, JobState.MERGED, now)

    def hold(self, job: ClaimedJob, delay: float, error: TableauError, outcome: str) -> None:
        """Stay `sending`, claimable again (as resumed) after `delay`.

        For a resumed job whose send failed but may yet have reached Tableau:
        requeued, it would be sent again without first looking for that refresh.
        """
        now = utcnow()
        code, message = _code_and_message(error)
        lease_until = now + timedelta(seconds=delay)
        with self.store.session() as session:
            # Released (no holder): its next claim is a resumption, not a crash.
            released = {"lease_until": lease_until, "claimed_by": None, "updated_at": now}
            if self._guarded(session, job, **released):
                self._attempt(session, job, outcome, error_code=code, message=message, at=now)

    def transient_failures(self, job: ClaimedJob) -> int:
        """Attempts that count toward `max_attempts`: transient failures and interruptions."""
        query = select(func.count()).where(
            Attempt.refresh_job_id == job.id, Attempt.outcome.in_(FAILED_ATTEMPTS)
        )
        with self.store.session(readonly=True) as session:
            return session.scalar(query) or 0

    # -- history ------------------------------------------------------------------------

    def recent_durations(self, target_key: str, limit: int = 5) -> list[float]:
        """Seconds from send to Tableau's success, of the item's last `limit` such refreshes."""
        query = (
            select(RJ.sent_at, RJ.finished_at)
            .where(RJ.target_key == target_key, RJ.state == JobState.SUCCEEDED)
            .where(RJ.finish_code.is_not(None), RJ.sent_at.is_not(None))
            .order_by(RJ.id.desc())
            .limit(limit)
        )
        with self.store.session(readonly=True) as session:
            rows = session.execute(query).all()
        return [(end - start).total_seconds() for start, end in rows if start and end]

    def unrecorded(self, tableau_job_ids: list[str]) -> list[str]:
        """Those of the Tableau jobs that no refresh job has recorded, in the order given."""
        if not tableau_job_ids:
            return []
        query = select(RJ.tableau_job_id).where(RJ.tableau_job_id.in_(tableau_job_ids))
        with self.store.session(readonly=True) as session:
            known = set(session.scalars(query))
        return [i for i in tableau_job_ids if i not in known]

    # -- replay (replay.py) -------------------------------------------------------------

    def replay(self, job_id: int) -> int:
        """Refresh a failed or dead job's item again for its events; the id of the job that will."""
        return replay_job(self.store, job_id, self.worker_id)

    def unreplayed(self, state: JobState = JobState.DEAD) -> list[int]:
        """Ids of the jobs in `state` that were never replayed, oldest first."""
        return unreplayed(self.store, state)

    # -- helpers ----------------------------------------------------------------------

    def _ended(self, session: Session, job_id: int, state: JobState, now: datetime) -> None:
        """The job reached a final state: queue its notifications, count it once committed."""
        enqueue(session, job_id, state, self.notify, now)
        event.listen(session, "after_commit", lambda _: REFRESHES.labels(state).inc(), once=True)

    def _guarded(self, session: Session, job: ClaimedJob, **values: Any) -> bool:
        """Update the job only while this worker still holds it."""
        result = session.execute(
            update(RJ)
            .where(
                RJ.id == job.id,
                RJ.claimed_by == self.worker_id,
                RJ.state.notin_(FINAL_STATES),
            )
            .values(**fit(RJ, values))  # Tableau's strings, cut to fit
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            log.warning("refresh.lease_lost", extra=job.log_fields | {"worker": self.worker_id})
            return False
        return True

    @staticmethod
    def _merge_into(session: Session, job: ClaimedJob, other: RefreshJob) -> None:
        """The other queued job of the item will serve this job's events too."""
        link_events(session, job.id, other.id)
        session.execute(
            update(RJ)
            .where(RJ.id == job.id)
            .values(error=f"merged into refresh job {other.id}", error_code=None)
        )
        log.info("refresh.merged", extra=job.log_fields | {"into": other.id})

    @staticmethod
    def _attempt(
        session: Session, job: ClaimedJob, outcome: str, *, at: datetime, **fields: Any
    ) -> None:
        fields = fit(Attempt, fields)  # Tableau's strings, cut to fit
        session.add(
            Attempt(
                refresh_job_id=job.id,
                number=job.attempts,
                started_at=job.claimed_at,
                finished_at=at,
                outcome=outcome,
                **fields,
            )
        )


def _code_and_message(error: TableauError | str) -> tuple[str | None, str]:
    if isinstance(error, str):
        return None, error
    return error.code or (str(error.status) if error.status else None), str(error)
