"""The states of a refresh job: one closed set, from which every list of them derives.

`JobState` is a `StrEnum`, so each member equals its string: the database's
`refresh_jobs.state` column and the admin API's JSON hold the same values as
before there was a type, and `row.state == JobState.QUEUED` holds for a row
read back as a plain `str`. The transitions are drawn in queue.py.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class JobState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    FOLLOWING = "following"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    MERGED = "merged"


JOB_STATES: Final = tuple(JobState)
FINAL_STATES: Final = (JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.MERGED)
# The relay's own refresh of the item may be running.
IN_FLIGHT: Final = (JobState.SENDING, JobState.FOLLOWING)
# The final states a person may replay (replay.py); also the dashboard's problems.
REPLAYABLE_STATES: Final = (JobState.FAILED, JobState.DEAD)
