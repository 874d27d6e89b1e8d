"""When to try a refresh again: a pure decision, tested with parametrize.

Transient failures (5xx, 429, timeouts, dropped connections) back off
exponentially with full jitter, never sooner than Tableau's Retry-After,
until `max_attempts`; then the job is dead-lettered. 409093 (a refresh of the
item is already queued or running in Tableau) is no failure: the relay waits
for Tableau's refresh to end and sends its own, because the running one may
have started before dbt finished writing. Permanent errors fail at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from dbt_tableau_relay.config import WORKER_DEFAULTS as W
from dbt_tableau_relay.errors import AlreadyQueuedError, TableauError, TransientTableauError


@dataclass(frozen=True)
class Decision:
    action: Literal["retry", "fail", "dead"]
    delay: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = W.max_attempts
    base_delay: float = W.retry_base_seconds
    max_delay: float = W.retry_max_seconds
    busy_delay: float = W.busy_retry_seconds  # between sends while Tableau runs its own refresh
    # Tableau Cloud ends a refresh after 2 hours: waiting as long as following does covers it.
    busy_timeout: float = W.follow_timeout

    def decide(
        self,
        error: TableauError,
        attempts: int,
        busy_for: float = 0.0,
        rng: random.Random | None = None,
    ) -> Decision:
        """What to do after send attempt number `attempts` failed with `error`.

        `busy_for`: seconds since the job was first answered 409093.
        """
        if isinstance(error, AlreadyQueuedError):
            if busy_for >= self.busy_timeout:
                return Decision("dead")
            return Decision("retry", self._jittered(self.busy_delay, rng, floor=0.5))
        if not isinstance(error, TransientTableauError):
            return Decision("fail")
        if attempts >= self.max_attempts:
            return Decision("dead")
        return Decision("retry", self.backoff(attempts, error.retry_after, rng))

    def backoff(
        self, attempts: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """The delay after failure number `attempts`: exponential, jittered, >= Retry-After."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        return max(self._jittered(ceiling, rng), retry_after or 0.0)

    @staticmethod
    def _jittered(ceiling: float, rng: random.Random | None, floor: float = 0.0) -> float:
        """Full jitter: spreads the retries of many jobs that failed together."""
        return (rng or random).uniform(floor * ceiling, ceiling)
