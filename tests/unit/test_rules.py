"""Which refreshes an event asks for: rule matching and per-event deduplication."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from dbt_tableau_relay.config import Rule, Target
from dbt_tableau_relay.events import DbtEvent
from dbt_tableau_relay.rules import PlannedRefresh, match, status_matches

COMPLETED = DbtEvent(
    event_id="wev_1",
    event_type="job.run.completed",
    timestamp=datetime(2024, 1, 1, tzinfo=UTC),
    account_id="1",
    job_id="123",
    run_id="12345",
    environment_id="1234",
    project_id="167194",
    run_status_code=10,
)


def rule(name: str = "r", on: dict[str, Any] | None = None, **extra: Any) -> Rule:
    data = {"name": name, "on": on or {}, "refresh": [{"workbook": "Sales/Overview"}]} | extra
    return Rule.model_validate(data)


@pytest.mark.parametrize(
    ("on", "event", "matches"),
    [
        ({}, COMPLETED, True),  # defaults: job.run.completed, success
        ({}, replace(COMPLETED, run_status_code=20), False),
        ({}, replace(COMPLETED, event_type="job.run.started", run_status_code=3), False),
        (
            {"event": "job.run.started", "status": "any"},
            replace(COMPLETED, event_type="job.run.started", run_status_code=3),
            True,
        ),
        (
            {"event": "job.run.errored", "status": "error"},
            replace(COMPLETED, event_type="job.run.errored", run_status_code=20),
            True,
        ),
        (
            {"event": "job.run.errored", "status": "error"},
            replace(COMPLETED, run_status_code=20),
            False,
        ),
        ({"status": "error"}, replace(COMPLETED, run_status_code=20), True),
        ({"status": "cancelled"}, replace(COMPLETED, run_status_code=30), True),
        ({"status": "cancelled"}, COMPLETED, False),
        ({"status": "any"}, replace(COMPLETED, run_status_code=30), True),
        ({"status": "any"}, replace(COMPLETED, run_status_code=None), True),
        ({"status": "success"}, replace(COMPLETED, run_status_code=None), False),
        ({"status": "success"}, replace(COMPLETED, run_status="Errored"), True),  # code, not text
    ],
)
def test_event_type_and_status(on: dict[str, Any], event: DbtEvent, matches: bool) -> None:
    assert bool(match([rule(on=on)], event)) is matches


@pytest.mark.parametrize("field", ["job_id", "environment_id", "project_id", "account_id"])
@pytest.mark.parametrize(
    ("ids", "matches"),
    [
        (["no-such-id", "999"], False),
        (None, True),  # not given: any
    ],
)
def test_id_sets_that_do_not_hold_the_id(field: str, ids: list[str] | None, matches: bool) -> None:
    on = {field: ids} if ids is not None else {}
    assert bool(match([rule(on=on)], COMPLETED)) is matches


@pytest.mark.parametrize(
    ("field", "given"),
    [
        ("job_id", 123),
        ("job_id", "123"),
        ("job_id", [1, 123]),
        ("job_id", ["1", " 123 "]),
        ("environment_id", 1234),
        ("environment_id", ["1234"]),
        ("project_id", 167194),
        ("project_id", ["167194", 5]),
        ("account_id", 1),
        ("account_id", "1"),
    ],
)
def test_ids_match_whether_written_as_int_or_string(field: str, given: object) -> None:
    assert match([rule(on={field: given})], COMPLETED)


@pytest.mark.parametrize("field", ["job_id", "environment_id", "project_id", "account_id"])
def test_a_rule_with_ids_needs_the_event_to_carry_that_id(field: str) -> None:
    event = replace(COMPLETED, **{field: None})
    assert match([rule(on={field: [123, 1, 1234, 167194]})], event) == ()


def test_all_conditions_must_hold() -> None:
    on = {"job_id": 123, "environment_id": 1234, "project_id": 1, "account_id": 1}
    assert match([rule(on=on)], COMPLETED) == ()


def test_a_planned_refresh_carries_rule_name_and_options() -> None:
    (planned,) = match([rule("marts", wait=False, incremental=True)], COMPLETED)
    assert planned == PlannedRefresh(
        Target(workbook="Sales/Overview"), "marts", wait=False, incremental=True
    )
    assert planned.key == "workbook:path:Sales/Overview"


def test_targets_keep_rule_order() -> None:
    r = rule(refresh=[{"datasource_id": "abc"}, {"workbook": "B"}, {"datasource": "A/C"}])
    keys = [p.key for p in match([r], COMPLETED)]
    assert keys == ["datasource:luid:abc", "workbook:path:B", "datasource:path:A/C"]


def test_same_target_from_two_rules_is_one_refresh_named_for_the_first() -> None:
    planned = match([rule("first"), rule("second")], COMPLETED)
    assert [(p.key, p.rule_name) for p in planned] == [("workbook:path:Sales/Overview", "first")]


@pytest.mark.parametrize(
    ("first", "second", "wait", "incremental"),
    [
        ((True, True), (True, True), True, True),
        ((False, True), (True, True), True, True),  # wait if any rule waits
        ((False, False), (False, True), False, False),  # incremental only if all are
        ((True, False), (False, True), True, False),
        ((False, True), (False, True), False, True),
    ],
)
def test_disagreeing_rules_merge_to_wait_any_incremental_all(
    first: tuple[bool, bool], second: tuple[bool, bool], wait: bool, incremental: bool
) -> None:
    rules = [
        rule("a", wait=first[0], incremental=first[1]),
        rule("b", wait=second[0], incremental=second[1]),
    ]
    (planned,) = match(rules, COMPLETED)
    assert (planned.wait, planned.incremental) == (wait, incremental)


def test_same_item_by_path_and_by_luid_stay_two_refreshes() -> None:
    """Whether a path and a LUID name one item is only known to Tableau."""
    r = rule(refresh=[{"workbook": "Sales/Overview"}, {"workbook_id": "3cc6cd06"}])
    assert len(match([r], COMPLETED)) == 2


def test_workbook_and_datasource_of_one_path_are_different_targets() -> None:
    r = rule(refresh=[{"workbook": "Sales/Overview"}, {"datasource": "Sales/Overview"}])
    assert len(match([r], COMPLETED)) == 2


def test_only_matching_rules_contribute() -> None:
    rules = [
        rule("wrong-job", on={"job_id": 9}, refresh=[{"workbook": "X"}]),
        rule("right-job", on={"job_id": 123}, refresh=[{"workbook": "Y"}]),
    ]
    assert [p.rule_name for p in match(rules, COMPLETED)] == ["right-job"]


def test_no_rules_no_refreshes() -> None:
    assert match([], COMPLETED) == ()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("success", 10, True),
        ("error", 20, True),
        ("cancelled", 30, True),
        ("any", None, True),
        ("success", 20, False),
        ("error", 30, False),
        ("success", 3, False),
        ("nonsense", 10, False),
    ],
)
def test_status_matches(status: str, code: int | None, expected: bool) -> None:
    assert status_matches(status, code) is expected
