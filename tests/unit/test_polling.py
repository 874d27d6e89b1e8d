"""How often a running refresh is polled: few polls for its length, a bounded lag at its end.

The refresh is simulated: each poll comes when `next_poll` said, and the
refresh is seen to have ended at the first poll at or after its end. Each
duration is tried across ±5 % around it, so no alignment of polls and end
is left out.
"""

from __future__ import annotations

import pytest

from dbt_tableau_relay.polling import CAP, FIRST, next_poll, polls_until, usual_duration


def follow(duration: float, expected: float | None = None) -> tuple[int, float]:
    """(polls, lag) for a refresh of `duration` seconds, polled when `next_poll` says."""
    age, polls = 0.0, 0
    while True:
        age += next_poll(age, expected)
        polls += 1
        if age >= duration:
            return polls, age - duration


def around(duration: float) -> list[float]:
    return [duration * (0.95 + 0.1 * i / 200) for i in range(201)]


@pytest.mark.parametrize(
    ("duration", "most_polls", "most_lag"),
    [
        (5.0, 3, 4.0),
        (40.0, 10, 12.0),  # the target: 10 polls, end known within 12 s
        (600.0, 20, 180.0),
        (3600.0, 30, CAP),  # the target: about 30 polls
        (7200.0, 45, CAP),  # Tableau Cloud's longest refresh
    ],
)
def test_polls_grow_slowly_with_a_refreshs_length_and_its_end_is_seen_soon(
    duration: float, most_polls: int, most_lag: float
) -> None:
    followed = [follow(d) for d in around(duration)]
    assert max(polls for polls, _ in followed) <= most_polls
    assert max(lag for _, lag in followed) <= most_lag


@pytest.mark.parametrize("duration", [5.0, 40.0, 600.0, 3600.0, 7200.0])
def test_knowing_the_usual_duration_costs_no_more_polls_and_the_lag_stays_bounded(
    duration: float,
) -> None:
    for d in around(duration):
        polls, lag = follow(d, expected=duration)
        assert polls <= follow(d)[0]
        assert lag <= CAP


def test_knowing_a_long_usual_duration_saves_most_polls_of_a_long_refresh() -> None:
    assert follow(3600.0, expected=3600.0)[0] <= 0.75 * follow(3600.0)[0]


@pytest.mark.parametrize("duration", [0.5, 2.0, 10.0, 25.0])
def test_a_refresh_that_fails_at_once_is_seen_soon_even_when_it_usually_runs_an_hour(
    duration: float,
) -> None:
    assert follow(duration, expected=3600.0) == follow(duration)


@pytest.mark.parametrize("expected", [None, 40.0, 7200.0])
def test_no_delay_exceeds_the_cap_and_the_first_look_comes_first(expected: float | None) -> None:
    assert next_poll(0.0, expected) == FIRST
    ages = [FIRST * 2**k for k in range(16)]  # 1 s to 9 hours
    assert all(0 < next_poll(age, expected) <= CAP for age in ages)


def test_polls_until_is_the_schedule_followed_on_time() -> None:
    assert polls_until(40.0) == follow(40.0)
    assert polls_until(3600.0, 3600.0) == follow(3600.0, 3600.0)


@pytest.mark.parametrize(
    ("recent", "usual"),
    [
        ([], None),
        ([30.0], None),  # one refresh is no habit
        ([30.0, 50.0], 40.0),
        ([30.0, 40.0, 3000.0], 40.0),  # one stuck refresh does not move it
        ([0.0, 0.0, 12.0], None),  # zero: not a measured refresh
    ],
)
def test_the_usual_duration_is_the_median_of_recent_refreshes(
    recent: list[float], usual: float | None
) -> None:
    assert usual_duration(recent) == usual
