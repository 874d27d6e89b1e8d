"""The read side's filters and pages on a real database, SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from admin_harness import HEALTH, REVENUE, seed_lineage_run

from dbt_tableau_relay import reads
from dbt_tableau_relay.lineage.explain import to_json
from dbt_tableau_relay.lineage.model import Decision, NodeVerdict, TableauItem
from dbt_tableau_relay.reads import JobFilter
from dbt_tableau_relay.store import Event, RefreshJob, RefreshJobEvent, Store, utcnow


def add_job(store: Store, ref: str, state: str = "succeeded", **fields: Any) -> int:
    now = utcnow()
    kind = fields.pop("target_kind", "workbook")
    by = fields.pop("target_by", "path")
    values: dict[str, Any] = {
        "target_kind": kind,
        "target_by": by,
        "target_ref": ref,
        "target_key": f"{kind}:{by}:{ref}",
        "rule_name": "sales",
        "incremental": False,
        "wait": True,
        "state": state,
        "attempts": 1,
        "not_before": now,
        "created_at": now,
        "updated_at": now,
        "last_event_at": now,
    }
    with store.session() as session:
        job = RefreshJob(**(values | fields))
        session.add(job)
        session.flush()
        return job.id


def add_event(store: Store, run_id: str, job_id: str = "101", serves: tuple[int, ...] = ()) -> int:
    with store.session() as session:
        event = Event(
            event_id=f"wev_{run_id}_{job_id}_{len(serves)}",
            job_id=job_id,
            run_id=run_id,
            outcome="queued",
            body="{}",
            received_at=utcnow(),
        )
        session.add(event)
        session.flush()
        session.add_all(RefreshJobEvent(refresh_job_id=j, event_pk=event.id) for j in serves)
        return event.id


def by_lineage(store: Store, item: TableauItem, *nodes: str) -> int:
    """A lineage-made job: sent by LUID, its path only in its explanation."""
    verdicts = tuple(NodeVerdict(f"model.shop.{n}", "success") for n in nodes)
    explanation = to_json([Decision(item, "refresh", verdicts, "tableau_lineage")])[0]
    return add_job(
        store,
        item.luid,
        target_kind=item.kind,
        target_by="luid",
        rule_name="lineage",
        explanation=json.dumps(explanation),
    )


def ids(store: Store, **where: str) -> list[int]:
    return [j.id for j in reads.jobs(store, JobFilter(**where)).rows]


def test_jobs_are_filtered_by_state_rule_and_target(store: Store) -> None:
    sales = add_job(store, "Sales/Executive Overview")
    failed = add_job(store, "Finance/Legacy Ledger", "failed", rule_name="ledger")
    other = add_job(store, "Finance/Legacy Ledger 2", "failed", rule_name="ledger")
    assert ids(store) == [other, failed, sales]
    assert ids(store, state="failed") == [other, failed]
    assert ids(store, rule="ledger", state="failed") == [other, failed]
    assert ids(store, rule="Ledger") == []  # a rule's name, exactly
    assert ids(store, target="Finance/Legacy Ledger") == [failed]
    assert ids(store, target="Finance/Legacy Ledger", state="succeeded") == []


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("ledger", ["Finance/Legacy Ledger", "Finance/Ledger_2024 100%"]),
        ("LEGACY", ["Finance/Legacy Ledger"]),
        ("_", ["Finance/Ledger_2024 100%"]),  # literally, not LIKE's any character
        ("%", ["Finance/Ledger_2024 100%"]),
        ("r_2", ["Finance/Ledger_2024 100%"]),
        ("nothing", []),
    ],
)
def test_an_item_is_found_by_a_part_of_its_path_in_any_case(
    store: Store, term: str, found: list[str]
) -> None:
    for ref in ("Sales/Executive Overview", "Finance/Legacy Ledger", "Finance/Ledger_2024 100%"):
        add_job(store, ref)
    refs = [j.target_ref for j in reads.jobs(store, JobFilter(item=term)).rows]
    assert sorted(refs) == sorted(found)


def test_a_lineage_made_job_is_found_by_the_path_its_decision_gives(store: Store) -> None:
    revenue = by_lineage(store, REVENUE, "orders")
    health = by_lineage(store, HEALTH, "revenue_daily")
    uber = by_lineage(store, TableauItem("datasource", "luid-3", "Über Umsatz", "Vertrieb"))
    assert ids(store, item="finance/rev") == [revenue]
    assert ids(store, item="Pipeline") == [health]
    assert ids(store, item="Über") == [uber]  # JSON writes it \u00dc; so is the term
    assert ids(store, item=REVENUE.luid[:8]) == [revenue]
    # Only the path: not the node names, the reason or the source that follow it.
    assert ids(store, item="orders") == []
    assert ids(store, item="tableau_lineage") == []


def test_a_page_says_whether_older_rows_follow(store: Store) -> None:
    made = [add_job(store, f"Sales/Workbook {n}") for n in range(7)]
    newest_first = made[::-1]
    first = reads.jobs(store, limit=3)
    assert [j.id for j in first.rows] == newest_first[:3]
    assert (first.newer, first.older) == (None, 3)
    middle = reads.jobs(store, limit=3, offset=3)
    assert [j.id for j in middle.rows] == newest_first[3:6]
    assert (middle.newer, middle.older) == (0, 6)
    last = reads.jobs(store, limit=3, offset=6)
    assert [j.id for j in last.rows] == newest_first[6:]
    assert (last.newer, last.older) == (3, None)
    assert reads.jobs(store, limit=3, offset=7).rows == []


def test_limits_are_bounded(store: Store) -> None:
    for n in range(3):
        add_job(store, f"Sales/Workbook {n}")
    assert reads.jobs(store, limit=0).limit == 1
    assert reads.jobs(store, limit=10**9).limit == reads.MAX_LIMIT
    assert reads.jobs(store, offset=-5).offset == 0


def test_events_are_filtered_by_dbt_job_and_run(store: Store) -> None:
    first = add_event(store, "1", job_id="101")
    second = add_event(store, "2", job_id="202")
    third = add_event(store, "3", job_id="101")
    assert [e.id for e in reads.events(store).rows] == [third, second, first]
    assert [e.id for e in reads.events(store, job_id="101").rows] == [third, first]
    assert [e.id for e in reads.events(store, run_id="2").rows] == [second]
    page = reads.events(store, job_id="101", limit=1)
    assert ([e.id for e in page.rows], page.older) == ([third], 1)


def test_a_job_serving_several_runs_names_each_once(store: Store) -> None:
    coalesced = add_job(store, "Sales/Executive Overview")
    alone = add_job(store, "Finance/Revenue")
    add_event(store, "71", serves=(coalesced,))
    add_event(store, "70", serves=(coalesced, alone))
    add_event(store, "70", job_id="102", serves=(coalesced,))
    assert reads.runs_of_jobs(store, [coalesced, alone]) == {coalesced: ["70", "71"], alone: ["70"]}


def test_a_run_story_holds_its_events_lineage_and_refreshes(store: Store) -> None:
    seeded = seed_lineage_run(store)
    story = reads.run_story(store, seeded.run_id)
    assert story is not None
    assert [e.id for e in story.events] == [seeded.event_pk]
    assert [j.id for j in story.lineage] == [seeded.lineage_job_id]
    assert [j.id for j in story.jobs] == [seeded.refresh_job_id]
    assert reads.jobs_of_events(store, [seeded.event_pk]) == {
        seeded.event_pk: [(seeded.refresh_job_id, "failed")]
    }
    assert reads.run_story(store, "no-such-run") is None


def test_the_newest_job_of_each_item(store: Store) -> None:
    add_job(store, "Sales/Executive Overview", "failed")
    newer = add_job(store, "Sales/Executive Overview", "succeeded")
    add_job(store, "Sales/Executive Overview", "merged")
    ledger = add_job(store, "Finance/Legacy Ledger", "dead")
    assert [j.id for j in reads.latest_per_item(store)] == [ledger, newer]


def test_a_nul_in_a_filter_matches_nothing_and_fails_nothing(store: Store) -> None:
    """PostgreSQL refuses NUL in text; the store keeps none, so a filter with one finds none."""
    add_job(store, "Sales/Executive Overview")
    add_event(store, "1")
    for where in ({"item": "a\x00"}, {"rule": "\x00"}, {"target": "\x00"}, {"state": "\x00"}):
        assert ids(store, **where) == []
    assert reads.events(store, job_id="\x00", run_id="\x00").rows == []
    assert reads.run_story(store, "\x00") is None
