"""Which Tableau items an event asks to refresh: pure functions over the rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, NamedTuple

from dbt_tableau_relay.config import LineageSource, Rule, RuleMatch, Target
from dbt_tableau_relay.events import (
    STATUS_CANCELLED,
    STATUS_ERROR,
    STATUS_SUCCESS,
    DbtEvent,
)

STATUS_CODES: Final[dict[str, int]] = {
    "success": STATUS_SUCCESS,
    "error": STATUS_ERROR,
    "cancelled": STATUS_CANCELLED,
}


@dataclass(frozen=True, slots=True)
class PlannedRefresh:
    """One refresh an event asks for; `rule_name` is the first rule that asked."""

    target: Target
    rule_name: str
    wait: bool
    incremental: bool
    key: str = field(init=False, repr=False, compare=False)  # target.key, computed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.target.key)


@dataclass(frozen=True, slots=True)
class PlannedLineage:
    """A rule that asks the worker to find, for the event's run, what lineage refreshes."""

    rule_name: str
    sources: tuple[LineageSource, ...]
    wait: bool
    incremental: bool


def match(rules: Iterable[Rule], event: DbtEvent) -> tuple[PlannedRefresh, ...]:
    """The refreshes of named items `event` asks for, one per target, in rule order."""
    planned: dict[str, PlannedRefresh] = {}
    for rule in rules:
        if not rule_matches(rule.on, event):
            continue
        for target in rule.items:
            wanted = PlannedRefresh(target, rule.name, rule.wait, rule.incremental)
            seen = planned.get(target.key)
            planned[target.key] = wanted if seen is None else merge(seen, wanted)
    return tuple(planned.values())


def match_lineage(rules: Iterable[Rule], event: DbtEvent) -> tuple[PlannedLineage, ...]:
    """The lineage rules `event` matches; only a run (an event with a run id) has lineage."""
    if event.run_id is None:
        return ()
    return tuple(
        PlannedLineage(rule.name, rule.lineage, rule.wait, rule.incremental)
        for rule in rules
        if rule.lineage and rule_matches(rule.on, event)
    )


class Ask(NamedTuple):
    """What a queued job of one item keeps of the asks it serves."""

    wait: bool
    incremental: bool
    last_event_at: datetime | None = None  # the newest event asking; None: not known yet


def join(first: Ask, second: Ask) -> Ask:
    """Two asks for one item become one refresh that satisfies both.

    Waiting is wanted if any asker wants it; an incremental refresh only if
    every asker is content with one (a full refresh covers an incremental one);
    the job keeps the newest event's time. The upsert that joins an event to a
    queued job (`store.queued_job_upsert`) says the same in SQL; a test holds
    the two to the same answers (tests/integration/test_merge_rule.py).
    """
    times = [t for t in (first.last_event_at, second.last_event_at) if t is not None]
    return Ask(
        wait=first.wait or second.wait,
        incremental=first.incremental and second.incremental,
        last_event_at=max(times) if times else None,
    )


def merge(first: PlannedRefresh, second: PlannedRefresh) -> PlannedRefresh:
    """One event's two asks for one item (`join`); the first rule keeps the name."""
    joined = join(Ask(first.wait, first.incremental), Ask(second.wait, second.incremental))
    return PlannedRefresh(first.target, first.rule_name, joined.wait, joined.incremental)


def rule_matches(on: RuleMatch, event: DbtEvent) -> bool:
    return (
        on.event == event.event_type
        and status_matches(on.status, event.run_status_code)
        and _in(on.job_id, event.job_id)
        and _in(on.environment_id, event.environment_id)
        and _in(on.project_id, event.project_id)
        and _in(on.account_id, event.account_id)
    )


def status_matches(status: str, code: int | None) -> bool:
    """`any` matches every event; the others compare `runStatusCode`, never the text."""
    return status == "any" or (code is not None and STATUS_CODES.get(status) == code)


def _in(allowed: frozenset[str] | None, value: str | None) -> bool:
    """No set given matches every event; a set given needs the event to carry the id."""
    return allowed is None or (value is not None and value in allowed)
