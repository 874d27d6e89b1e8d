"""The worker: claims due refresh jobs, sends them to Tableau, follows them.

One loop thread claims work and hands each job to a small thread pool (TSC is
synchronous). A job never holds a thread while Tableau runs the refresh: it
is polled once, released with the time of its next poll, and claimed again
then, so a few threads follow any number of hour-long refreshes. All threads
share one TableauClient, hence one Tableau session.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from dbt_tableau_relay.config import WorkerSettings
from dbt_tableau_relay.errors import TableauError, TransientTableauError
from dbt_tableau_relay.queue import ClaimedJob, RefreshQueue
from dbt_tableau_relay.retry import RetryPolicy
from dbt_tableau_relay.store import Store, utcnow
from dbt_tableau_relay.tableau import TableauClient

log = logging.getLogger(__name__)

FIRST_POLL = 0.5  # seconds after the 202 before the first look at the job


def next_poll(seconds_since_sent: float) -> float:
    """Poll often while a refresh is young, rarely once it has run for a while."""
    return min(15.0, max(FIRST_POLL, seconds_since_sent / 4))


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
    ) -> None:
        self.settings = settings or WorkerSettings()
        self.client = client
        self.queue = RefreshQueue(
            store,
            worker_id or default_worker_id(),
            self.settings.lease_seconds,
            max_attempts=self.settings.max_attempts,
        )
        self.policy = RetryPolicy(
            max_attempts=self.settings.max_attempts,
            base_delay=self.settings.retry_base_seconds,
            max_delay=self.settings.retry_max_seconds,
            busy_delay=self.settings.busy_retry_seconds,
        )
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="refresh")
        self._slots = threading.Semaphore(self.settings.concurrency)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

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
        free = 0
        while self._slots.acquire(blocking=False):
            free += 1
        if not free:
            self._wake.wait(0.05)  # every slot is busy: wait for one
            return 0
        jobs = self.queue.claim(free)
        for _ in range(free - len(jobs)):
            self._slots.release()
        for job in jobs:
            self._pool.submit(self._run, job)
        return len(jobs)

    def _run(self, job: ClaimedJob) -> None:
        try:
            self.process(job)
        except Exception as exc:
            # A bug or a database hiccup: the lease brings the job back later, and each
            # claim counts as an attempt, so a job that always crashes ends dead.
            log.exception("refresh.crashed", extra={"job_id": job.id, "error": type(exc).__name__})
        finally:
            self._slots.release()
            self._wake.set()

    # -- one job ----------------------------------------------------------------------

    def process(self, job: ClaimedJob) -> None:
        if job.state == "following" and job.tableau_job_id:
            self._follow(job)
        else:
            self._send(job)

    def _send(self, job: ClaimedJob) -> None:
        try:
            item, tableau_job = self.client.refresh(job.target, incremental=job.incremental)
        except TableauError as error:
            self._failed_send(job, error)
            return
        log.info(
            "refresh.sent",
            extra={"job_id": job.id, "target": str(job.target), "tableau_job": tableau_job.id},
        )
        self.queue.sent(job, tableau_job.id, item.luid, first_poll=FIRST_POLL)

    def _failed_send(self, job: ClaimedJob, error: TableauError) -> None:
        failures = self.queue.transient_failures(job) + isinstance(error, TransientTableauError)
        busy_for = (utcnow() - job.created_at).total_seconds()
        decision = self.policy.decide(error, failures, busy_for=busy_for)
        extra = {"job_id": job.id, "target": str(job.target), "error": str(error)}
        if decision.action == "retry":
            outcome = "already_queued" if error.code == "409093" else "transient"
            log.info(f"refresh.{outcome}", extra=extra | {"retry_in": round(decision.delay, 1)})
            self.queue.retry_later(job, decision.delay, error, outcome)
        elif decision.action == "dead":
            log.error("refresh.dead", extra=extra)
            self.queue.fail(job, error, state="dead")
        else:
            log.error("refresh.failed", extra=extra)
            self.queue.fail(job, error)

    def _follow(self, job: ClaimedJob) -> None:
        assert job.tableau_job_id is not None
        age = (utcnow() - (job.sent_at or job.created_at)).total_seconds()
        try:
            tableau_job = self.client.job(job.tableau_job_id)
        except TransientTableauError as error:
            log.info("refresh.poll_failed", extra={"job_id": job.id, "error": str(error)})
            self.queue.poll_later(job, max(next_poll(age), error.retry_after or 0.0))
            return
        except TableauError as error:
            self.queue.fail(job, error)
            return
        if tableau_job.finished:
            notes = "; ".join(tableau_job.notes) or None
            log.info(
                f"refresh.{tableau_job.outcome}",
                extra={"job_id": job.id, "tableau_job": tableau_job.id, "notes": notes},
            )
            self.queue.finished(job, tableau_job.finish_code, notes, tableau_job.succeeded)
        elif age > self.settings.follow_timeout:
            self.queue.fail(
                job, f"Tableau job {job.tableau_job_id} still running after {age:.0f} s"
            )
        else:
            self.queue.poll_later(job, next_poll(age))
