"""The worker: claims due refresh jobs, sends them to Tableau, follows them.

One loop thread claims work and hands each job to a small thread pool (TSC is
synchronous). A job never holds a thread while Tableau runs the refresh: it
is polled once, released with the time of its next poll, and claimed again
then, so a few threads follow any number of hour-long refreshes, polled on
the schedule of polling.py (spread by the item's usual duration). All threads
share one TableauClient, hence one Tableau session. With several replicas,
only the one that is `leading` (holds the `tableau` lease, cluster.py) claims.

A job claimed again after its worker died mid-send (`resumed`) may have
reached Tableau without its 202 being recorded. Before sending it again the
worker looks for that refresh (Query Jobs: the item's refreshes created since
its newest event, each confirmed by the item LUID Query Job names) and adopts
it: follows it instead of sending a duplicate. A PAT that may not list jobs
(403: not a site administrator) makes the worker send instead, said once in
the log (`refresh.adopt_unavailable`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from dbt_tableau_relay.config import WorkerSettings
from dbt_tableau_relay.errors import (
    NotLeaderError,
    PermanentTableauError,
    TableauError,
    TransientTableauError,
)
from dbt_tableau_relay.lineage_queue import ClaimedLineage, LineageQueue
from dbt_tableau_relay.lineage_worker import LineageWorker, RunResolver
from dbt_tableau_relay.notifications import Route
from dbt_tableau_relay.polling import next_poll, usual_duration
from dbt_tableau_relay.queue import ClaimedJob, RefreshQueue
from dbt_tableau_relay.retry import RetryPolicy
from dbt_tableau_relay.states import JobState
from dbt_tableau_relay.store import Store, utcnow
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.tableau_jobs import TableauJob
from dbt_tableau_relay.targets import Item

log = logging.getLogger(__name__)

USUAL_DURATION_TTL = 600.0  # seconds an item's usual duration is reused before it is read again


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(
        self,
        store: Store,
        client: TableauClient,
        settings: WorkerSettings | None = None,
        *,
        worker_id: str | None = None,
        resolver: RunResolver | None = None,
        notify: Sequence[Route] = (),
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings or WorkerSettings()
        self.leading = leading  # only the replica that talks to Tableau claims (cluster.py)
        self.client = client
        worker_id = worker_id or default_worker_id()
        self.queue = RefreshQueue(
            store,
            worker_id,
            self.settings.lease_seconds,
            notify,
            max_attempts=self.settings.max_attempts,
        )
        self.policy = RetryPolicy(
            max_attempts=self.settings.max_attempts,
            base_delay=self.settings.retry_base_seconds,
            max_delay=self.settings.retry_max_seconds,
            busy_delay=self.settings.busy_retry_seconds,
        )
        self.lineage = (
            None
            if resolver is None
            else LineageWorker(
                LineageQueue(
                    store,
                    worker_id,
                    self.settings.lease_seconds,
                    max_attempts=self.settings.max_attempts,
                ),
                resolver,
                self.policy,
            )
        )
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="refresh")
        self._slots = threading.Semaphore(self.settings.concurrency)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._usual: dict[str, tuple[float, float | None]] = {}  # target_key -> (read at, seconds)
        self._notes_lock = threading.Lock()
        self._adopt_unavailable_said = False

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="relay-worker", daemon=True)
        self._thread.start()
        log.info("worker.started", extra={"worker": self.queue.worker_id})

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the calls in flight; unsent jobs stay queued for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        log.info("worker.stopped", extra={"worker": self.queue.worker_id})

    def wake(self) -> None:
        """New work was recorded: look now rather than at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = self._claim_free_slots()
            except Exception:
                log.exception("worker.claim_failed")
                claimed = 0
            if not claimed:
                self._wake.wait(self.settings.poll_interval)
                self._wake.clear()

    def _claim_free_slots(self) -> int:
        if not self.leading():
            return 0  # another replica talks to Tableau; woken when this one leads
        free = 0
        while self._slots.acquire(blocking=False):
            free += 1
        if not free:
            self._wake.wait(0.05)  # every slot is busy: wait for one
            return 0
        jobs = self.queue.claim(free)
        found: list[ClaimedJob | ClaimedLineage] = [*jobs]
        if self.lineage is not None and len(found) < free:
            found += self.lineage.queue.claim(free - len(found))
        for _ in range(free - len(found)):
            self._slots.release()
        for job in found:
            self._pool.submit(self._run, job)
        return len(found)

    def _run(self, job: ClaimedJob | ClaimedLineage) -> None:
        try:
            if isinstance(job, ClaimedLineage):
                assert self.lineage is not None
                self.lineage.process(job)
            else:
                self.process(job)
        except Exception as exc:
            # A bug or a database hiccup: the lease brings the job back later, and each
            # claim counts as an attempt, so a job that always crashes ends dead.
            if isinstance(job, ClaimedLineage):
                kind, fields = "lineage", {"job_id": job.id, "run_id": job.run_id}
            else:
                kind, fields = "refresh", job.log_fields
            log.exception(f"{kind}.crashed", extra=fields | {"error": type(exc).__name__})
        finally:
            self._slots.release()
            self._wake.set()

    # -- one job ----------------------------------------------------------------------

    def process(self, job: ClaimedJob) -> None:
        if job.state == JobState.FOLLOWING and job.tableau_job_id:
            self._follow(job)
        else:
            self._send(job)

    def _send(self, job: ClaimedJob) -> None:
        try:
            item, tableau_job, outcome = self._adopt_or_refresh(job)
        except TableauError as error:
            self._failed_send(job, error)
            return
        log.info(
            "refresh.sent" if outcome == "accepted" else "refresh.adopted",
            extra=job.log_fields | {"target": str(job.target), "tableau_job": tableau_job.id},
        )
        self.queue.sent(job, tableau_job.id, item.luid, next_poll(0.0), outcome=outcome)

    def _adopt_or_refresh(self, job: ClaimedJob) -> tuple[Item, TableauJob, str]:
        """The refresh a resumed job already sent, if Tableau has it; else a new one."""
        if job.resumed and (found := self._unrecorded_refresh(job)) is not None:
            return (*found, "adopted")
        item, tableau_job = self.client.refresh(job.target, incremental=job.incremental)
        return item, tableau_job, "accepted"

    def _unrecorded_refresh(self, job: ClaimedJob) -> tuple[Item, TableauJob] | None:
        """A refresh of the job's item created since its newest event that no job recorded.

        Any such refresh serves the job's events (it started after them), so
        even one started by someone else may be adopted. Since the job was
        claimed after its newest event, the one it sent itself is among them.
        """
        item = self.client.resolve(job.target)
        try:
            listed = self.client.refresh_candidates(
                item, job.last_event_at, incremental=job.incremental
            )
        except PermanentTableauError as error:  # 403: the PAT is no site administrator
            self._say_adopt_unavailable(error)
            return None
        for tableau_job_id in self.queue.unrecorded(listed):
            try:
                found = self.client.job(tableau_job_id)
            except PermanentTableauError:
                continue  # gone since it was listed
            if found.item_luid == item.luid:
                return item, found
        return None

    def _say_adopt_unavailable(self, error: TableauError) -> None:
        with self._notes_lock:
            first, self._adopt_unavailable_said = not self._adopt_unavailable_said, True
        if first:
            log.warning(
                "refresh.adopt_unavailable",
                extra={"error": str(error), "hint": "a site administrator's PAT can list jobs"},
            )

    def _failed_send(self, job: ClaimedJob, error: TableauError) -> None:
        if isinstance(error, NotLeaderError):
            self._hand_over(job, error)
            return
        failures = self.queue.transient_failures(job) + isinstance(error, TransientTableauError)
        busy_for = (utcnow() - job.created_at).total_seconds()
        decision = self.policy.decide(error, failures, busy_for=busy_for)
        extra = job.log_fields | {"target": str(job.target), "error": str(error)}
        if decision.action == "retry":
            outcome = "already_queued" if error.code == "409093" else "transient"
            log.info(f"refresh.{outcome}", extra=extra | {"retry_in": round(decision.delay, 1)})
            if job.resumed:  # stays resumed: the next attempt looks for its refresh again
                self.queue.hold(job, decision.delay, error, outcome)
            else:
                self.queue.retry_later(job, decision.delay, error, outcome)
        elif decision.action == "dead":
            log.error("refresh.dead", extra=extra)
            self.queue.dead(job, error)
        else:
            log.error("refresh.failed", extra=extra)
            self.queue.fail(job, error)

    def _hand_over(self, job: ClaimedJob, error: NotLeaderError) -> None:
        """This replica lost the lead before the job reached Tableau: the leader sends it now."""
        log.info("refresh.handed_over", extra={"job_id": job.id, "target": str(job.target)})
        if job.resumed:  # its earlier attempt may have reached Tableau: stay resumed
            self.queue.hold(job, 0.0, error, "handed_over")
        else:
            self.queue.retry_later(job, 0.0, error, "handed_over")

    def _usual_duration(self, job: ClaimedJob) -> float | None:
        """The item's usual refresh duration, read from its past jobs at most every TTL."""
        now = time.monotonic()
        cached = self._usual.get(job.target_key)
        if cached is not None and now - cached[0] < USUAL_DURATION_TTL:
            return cached[1]
        seconds = usual_duration(self.queue.recent_durations(job.target_key))
        self._usual[job.target_key] = (now, seconds)
        return seconds

    def _follow(self, job: ClaimedJob) -> None:
        assert job.tableau_job_id is not None
        age = (utcnow() - (job.sent_at or job.created_at)).total_seconds()
        try:
            tableau_job = self.client.job(job.tableau_job_id)
        except NotLeaderError:
            self.queue.poll_later(job, 0.0)  # the leader polls it now
            return
        except TransientTableauError as error:
            log.info("refresh.poll_failed", extra=job.log_fields | {"error": str(error)})
            delay = next_poll(age, self._usual_duration(job))
            self.queue.poll_later(job, max(delay, error.retry_after or 0.0))
            return
        except TableauError as error:
            log.error("refresh.failed", extra=job.log_fields | {"error": str(error)})
            self.queue.fail(job, error)
            return
        if tableau_job.finished:
            notes = "; ".join(tableau_job.notes) or None
            log.info(
                f"refresh.{tableau_job.outcome}",
                extra=job.log_fields | {"tableau_job": tableau_job.id, "notes": notes},
            )
            self.queue.finished(job, tableau_job.finish_code, notes, tableau_job.succeeded)
        elif age > self.settings.follow_timeout:
            message = f"Tableau job {job.tableau_job_id} still running after {age:.0f} s"
            log.error("refresh.failed", extra=job.log_fields | {"error": message})
            self.queue.fail(job, message)
        else:
            self.queue.poll_later(job, next_poll(age, self._usual_duration(job)))
