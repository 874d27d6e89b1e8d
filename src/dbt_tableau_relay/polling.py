"""When to look at a running Tableau refresh again: one schedule, a pure function.

The worker (following a job across claims) and `TableauClient.wait` (`refresh
--wait`) both ask `next_poll`. The delay grows with the refresh's age, so
the polls grow with the logarithm of its length (one per `CAP` once the
delay reaches it), while the lag (from the refresh's end to the poll that
sees it) stays a share of its length, and never more than `CAP`:

- a first look after `FIRST` second: refreshes that fail at once (bad
  credentials to the database) are known at once;
- then `RATIO` of the age, at least `FLOOR` seconds, at most `CAP`.

Followed with every poll on time (`polls_until`, tests/unit/test_polling.py):
a 40 s refresh costs 9 polls and its end is known within 11 s; 10 min, 19
polls; 1 h, 30 polls; 2 h, 43; the lag never exceeds 5 minutes.

When the item's usual duration is known (the median of its recent
refreshes, `usual_duration`), a refresh still running after `QUICK` seconds
(past the failures that come at once) is polled as if it were already half
its usual length old: its end will lag that much anyway, so the polls that
could not see it are saved (10 min: 14 polls, 1 h: 21, 2 h: 34), and a
refresh that ends early is still seen within `CAP`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

FIRST = 1.0  # seconds from the 202 to the first look
QUICK = 30.0  # a refresh that fails at once (bad database credentials) fails within this
FLOOR = 4.0  # the shortest delay after that
RATIO = 0.3  # delay as a share of the refresh's age: the lag's share of its length
CAP = 300.0  # the longest delay: the lag never exceeds it


def next_poll(age: float, expected: float | None = None) -> float:
    """Seconds from now to the next look at a refresh sent `age` seconds ago.

    `expected`: the item's usual refresh duration in seconds, if known.
    """
    if age < FIRST:
        return FIRST - age
    basis = age
    if expected is not None and age >= QUICK:
        basis = max(age, expected / 2)  # it will run about `expected`: lag at its end anyway
    return min(CAP, max(FLOOR, RATIO * basis))


def polls_until(duration: float, expected: float | None = None) -> tuple[int, float]:
    """(polls, lag): how a refresh of `duration` seconds is followed when every poll is on time."""
    age, polls = 0.0, 0
    while True:
        age += next_poll(age, expected)
        polls += 1
        if age >= duration:
            return polls, age - duration


def usual_duration(recent: Sequence[float], least: int = 2) -> float | None:
    """The median of an item's recent refresh durations; None with fewer than `least`."""
    kept = [d for d in recent if d > 0]
    return statistics.median(kept) if len(kept) >= least else None
