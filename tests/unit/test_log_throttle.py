"""`logs.Throttle`: at most one line per interval of an event a stranger can cause."""

from __future__ import annotations

from dbt_tableau_relay.logs import Throttle


def test_the_first_line_passes_and_says_nothing_was_held() -> None:
    assert Throttle(10.0).admit(100.0) == 0


def test_lines_within_the_interval_are_held_and_counted_on_the_next() -> None:
    throttle = Throttle(10.0)
    assert throttle.admit(100.0) == 0
    held = [throttle.admit(100.0 + i / 10) for i in range(1, 100)]  # 9.9 s of lines
    assert held == [None] * 99
    assert throttle.admit(110.0) == 99  # the next line says how many it stands for
    assert throttle.admit(110.5) is None
    assert throttle.admit(125.0) == 1


def test_a_flood_lets_through_one_line_per_interval() -> None:
    throttle = Throttle(10.0)
    passed = [t for t in range(0, 60_000) if throttle.admit(t / 1000) is not None]  # 60 s
    assert passed == [0, 10_000, 20_000, 30_000, 40_000, 50_000]
