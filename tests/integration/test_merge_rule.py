"""The merge rule for two asks for one item, in Python (`rules.join`) and in SQL.

`store.queued_job_upsert` repeats `rules.join` in SQL (an event joining the
item's queued job); the recorder's batch loop and `rules.merge` use the Python
one. Conventions, item 13: a test holds the two to the same answers.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from dbt_tableau_relay.rules import Ask, join
from dbt_tableau_relay.store import Store, queued_job_row, queued_job_upsert, utcnow

OPTIONS = list(itertools.product([False, True], repeat=2))  # (wait, incremental)


def job_row(ask: Ask) -> dict[str, Any]:
    assert ask.last_event_at is not None
    return queued_job_row(
        kind="workbook",
        by="path",
        ref="Sales/Overview",
        key="workbook:path:Sales/Overview",
        rule_name="r",
        incremental=ask.incremental,
        wait=ask.wait,
        last_event_at=ask.last_event_at,
        now=utcnow(),
    )


@pytest.mark.parametrize("newer_first", [False, True], ids=["newer-second", "newer-first"])
@pytest.mark.parametrize(("second_wait", "second_incremental"), OPTIONS)
@pytest.mark.parametrize(("first_wait", "first_incremental"), OPTIONS)
def test_the_sql_upsert_merges_as_the_python_rule_does(
    store: Store,
    first_wait: bool,
    first_incremental: bool,
    second_wait: bool,
    second_incremental: bool,
    newer_first: bool,
) -> None:
    older = utcnow().replace(microsecond=0)
    newer = older + timedelta(minutes=5)
    first = Ask(first_wait, first_incremental, newer if newer_first else older)
    second = Ask(second_wait, second_incremental, older if newer_first else newer)

    with store.session() as session:
        ids = {
            session.execute(queued_job_upsert(store.dialect), job_row(a)).one()[0]
            for a in (first, second)
        }
    [job_id] = ids  # the second ask joined the first one's job
    job = store.get_job(job_id)
    assert job is not None

    assert Ask(job.wait, job.incremental, job.last_event_at) == join(first, second)
    assert join(first, second).last_event_at == newer
