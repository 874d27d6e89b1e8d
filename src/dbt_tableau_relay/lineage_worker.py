"""The worker's lineage side: resolve a run's lineage job, then queue its refreshes.

Runs on the worker's pool, never in the webhook's request: fetching a run's
artifacts and asking Tableau's Metadata API take seconds, and dbt's artifacts
may not be readable yet when the `errored` event comes. Transient failures
(either API down, rate limits, artifacts not yet there) retry with the
worker's backoff; permanent ones fail the job with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from dbt_tableau_relay.config import LineageSource
from dbt_tableau_relay.errors import RelayError, TransientError
from dbt_tableau_relay.lineage.model import Decision
from dbt_tableau_relay.lineage_queue import ClaimedLineage, LineageQueue
from dbt_tableau_relay.retry import RetryPolicy

log = logging.getLogger(__name__)


class RunResolver(Protocol):
    def decide(self, run_id: str, sources: Sequence[LineageSource]) -> list[Decision]:
        """Every Tableau item the sources consider for the run, with its decision."""
        ...


class LineageWorker:
    def __init__(self, queue: LineageQueue, resolver: RunResolver, policy: RetryPolicy) -> None:
        self.queue = queue
        self.resolver = resolver
        self.policy = policy

    def process(self, job: ClaimedLineage) -> None:
        extra = {"lineage_job": job.id, "run_id": job.run_id, "rule": job.rule_name}
        try:
            decisions = self.resolver.decide(job.run_id, job.sources)
        except TransientError as error:
            if job.attempts >= self.policy.max_attempts:
                log.error("lineage.dead", extra=extra | {"error": str(error)})
                self.queue.fail(job, str(error), dead=True)
                return
            delay = self.policy.backoff(job.attempts, getattr(error, "retry_after", None))
            log.info("lineage.retry", extra=extra | {"error": str(error), "retry_in": delay})
            self.queue.retry_later(job, delay, str(error))
            return
        except RelayError as error:
            log.error("lineage.failed", extra=extra | {"error": str(error)})
            self.queue.fail(job, str(error))
            return
        self.queue.done(job, decisions)
