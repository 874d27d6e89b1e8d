"""Periodic: a cycle that raises is logged, and the next cycle still runs."""

from __future__ import annotations

import logging
import threading

import pytest

from dbt_tableau_relay.periodic import Periodic


class Flaky(Periodic):
    name = "flaky"
    every = 0.01

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.twice = threading.Event()

    def run_once(self) -> None:
        self.calls += 1
        if self.calls >= 2:
            self.twice.set()
        if self.calls == 1:
            raise RuntimeError("an outage")


def test_a_failed_cycle_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    task = Flaky()
    task.start()
    try:
        assert task.twice.wait(10)
    finally:
        task.stop()
    assert "flaky.failed" in caplog.messages
