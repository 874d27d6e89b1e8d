"""Each default is written once, in config.py; the others take theirs from there."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from dbt_tableau_relay import cli
from dbt_tableau_relay.config import DbtSettings, WorkerSettings
from dbt_tableau_relay.lineage_queue import LineageQueue
from dbt_tableau_relay.queue import RefreshQueue
from dbt_tableau_relay.retry import RetryPolicy
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.webhooks import BODY_TIMEOUT


def default_of(function: Callable[..., object], name: str) -> object:
    return inspect.signature(function).parameters[name].default


def test_the_retry_policy_defaults_are_the_workers() -> None:
    w, policy = WorkerSettings(), RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay, policy.busy_delay) == (
        w.max_attempts,
        w.retry_base_seconds,
        w.retry_max_seconds,
        w.busy_retry_seconds,
    )
    assert policy.busy_timeout == w.follow_timeout


def test_the_queues_lease_is_the_workers() -> None:
    lease = WorkerSettings().lease_seconds
    assert default_of(RefreshQueue.__init__, "lease") == lease
    assert default_of(LineageQueue.__init__, "lease") == lease


def test_one_follow_timeout_for_the_worker_the_client_and_the_cli() -> None:
    follow = WorkerSettings().follow_timeout
    assert default_of(TableauClient.wait, "timeout") == follow
    [timeout] = [p for p in cli.refresh.params if p.name == "timeout"]
    assert timeout.default == follow


def test_the_webhook_body_timeout_is_the_settings() -> None:
    assert DbtSettings().body_timeout_seconds == BODY_TIMEOUT
