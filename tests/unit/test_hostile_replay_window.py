"""The replay window decision: `replay_problem(timestamp, now, max_age, skew)`, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbt_tableau_relay.webhooks import MAX_CLOCK_SKEW, replay_problem

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize("age", [10**9, 0, -(10**6)])
def test_no_window_lets_every_timestamp_in(age: float) -> None:
    assert replay_problem(ago(age), NOW, None) is None


@pytest.mark.parametrize("age", [0, 1, 3599.999, 3600])
def test_an_event_no_older_than_the_window_is_inside(age: float) -> None:
    assert replay_problem(ago(age), NOW, 3600) is None


@pytest.mark.parametrize("age", [3600.001, 3601, 10**9])
def test_an_event_older_than_the_window_is_refused_saying_how_old(age: float) -> None:
    problem = replay_problem(ago(age), NOW, 3600)
    assert problem is not None
    assert "older than the 3600 s replay window" in problem


@pytest.mark.parametrize("ahead", [0.001, 30, MAX_CLOCK_SKEW])
def test_an_event_a_little_in_the_future_is_inside(ahead: float) -> None:
    assert replay_problem(ago(-ahead), NOW, 3600) is None


@pytest.mark.parametrize("ahead", [MAX_CLOCK_SKEW + 0.001, 3600, 10**9])
def test_an_event_further_in_the_future_than_the_skew_is_refused(ahead: float) -> None:
    problem = replay_problem(ago(-ahead), NOW, 3600)
    assert problem is not None
    assert "in the future" in problem


def test_the_skew_is_a_parameter() -> None:
    assert replay_problem(ago(-10), NOW, 3600, skew=5) is not None


@pytest.mark.parametrize("moment", [datetime.min, datetime.max])
def test_the_ends_of_time_are_refused_not_overflowed(moment: datetime) -> None:
    assert replay_problem(moment.replace(tzinfo=UTC), NOW, 3600) is not None


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(timezones=st.just(UTC)),
    st.floats(min_value=0.001, max_value=1e9, allow_nan=False),
    st.floats(min_value=0, max_value=3600, allow_nan=False),
)
def test_an_event_is_inside_exactly_when_its_age_is_within_minus_skew_and_max_age(
    timestamp: datetime, max_age: float, skew: float
) -> None:
    age = (NOW - timestamp).total_seconds()
    inside = -skew <= age <= max_age
    assert (replay_problem(timestamp, NOW, max_age, skew) is None) == inside
