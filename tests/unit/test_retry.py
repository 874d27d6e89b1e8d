"""When a failed send is tried again, given up, or dead-lettered."""

import random

import pytest

from dbt_tableau_relay.errors import (
    AlreadyQueuedError,
    PermanentTableauError,
    TargetError,
    TransientTableauError,
)
from dbt_tableau_relay.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay=2.0, max_delay=60.0, busy_delay=20.0)


@pytest.mark.parametrize(
    ("error", "attempts", "action"),
    [
        (TransientTableauError("503"), 1, "retry"),
        (TransientTableauError("503"), 4, "retry"),
        (TransientTableauError("503"), 5, "dead"),
        (PermanentTableauError("403"), 1, "fail"),
        (TargetError("no such workbook"), 1, "fail"),
        (AlreadyQueuedError("409093"), 1, "retry"),
        (AlreadyQueuedError("409093"), 50, "retry"),
    ],
)
def test_decision(error: Exception, attempts: int, action: str) -> None:
    assert POLICY.decide(error, attempts).action == action  # type: ignore[arg-type]


@pytest.mark.parametrize(("attempts", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)])
def test_backoff_is_exponential_with_full_jitter(attempts: int, ceiling: float) -> None:
    rng = random.Random(7)
    delays = [POLICY.decide(TransientTableauError(), attempts, rng=rng).delay for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.8  # spread over the whole window, not a fixed step


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_attempts=100, base_delay=2.0, max_delay=60.0)
    assert policy.decide(TransientTableauError(), 40).delay <= 60.0


def test_retry_after_is_honoured() -> None:
    error = TransientTableauError("429", retry_after=45.0)
    assert POLICY.decide(error, 1).delay >= 45.0


def test_already_queued_waits_for_tableau_then_gives_up() -> None:
    busy = AlreadyQueuedError("409093")
    assert 10.0 <= POLICY.decide(busy, 1, busy_for=60).delay <= 20.0
    assert POLICY.decide(busy, 1, busy_for=POLICY.busy_timeout).action == "dead"
