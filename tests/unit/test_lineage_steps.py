"""Choosing a run's build steps and combining their results, on real run_results."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import pytest

from dbt_tableau_relay.lineage.artifacts import RunResults, load_run_results
from dbt_tableau_relay.lineage.steps import (
    Step,
    StepInfo,
    build_of,
    candidate_steps,
    combine,
    is_build,
    step_command,
)

ARTIFACTS = Path(__file__).parents[1] / "fixtures" / "dbt-artifacts"
P = "relay_shop"
CLONE = "Clone git repository"
PROFILE = "Create profile from connection Snowflake"


@cache
def results(name: str) -> RunResults:
    return load_run_results(ARTIFACTS / name / "run_results.json")


def steps(*names: str) -> list[Step]:
    return [Step(index, name) for index, name in enumerate(names, start=1)]


def invoke(command: str) -> str:
    return f"Invoke dbt with `{command}`"


@pytest.mark.parametrize(
    ("name", "command"),
    [
        (invoke("dbt build"), "build"),
        (invoke("dbt run --select orders+"), "run"),
        (invoke("dbt seed --full-refresh"), "seed"),
        (invoke("dbt snapshot"), "snapshot"),
        (invoke("dbt retry"), "retry"),
        (invoke("dbt docs generate"), "docs"),
        (invoke("dbt source freshness"), "source"),
        (invoke("dbt run-operation stage_external_sources"), "run-operation"),
        (invoke("dbt --warn-error build"), "build"),
        (invoke("dbt --log-format json run"), "run"),  # a global flag's value is stepped over
        (invoke("dbt build --exclude 'tag:run'"), "build"),
        (invoke("dbt run --vars '{a: 1"), "run"),  # an unbalanced quote
        ("dbt build", "build"),  # a name without the "Invoke dbt with" wording
        (CLONE, None),
        (PROFILE, None),
        (invoke("python scripts/load.py"), None),
    ],
)
def test_step_command(name: str, command: str | None) -> None:
    assert step_command(name) == command


@pytest.mark.parametrize(
    ("names", "chosen"),
    [
        pytest.param(
            [CLONE, PROFILE, invoke("dbt deps"), invoke("dbt build"), invoke("dbt docs generate")],
            [4],
            id="docs-generate-last",
        ),
        pytest.param(
            [
                CLONE,
                PROFILE,
                invoke("dbt seed"),
                invoke("dbt run --select +revenue_daily"),
                invoke("dbt snapshot"),
                invoke("dbt test"),
            ],
            [3, 4, 5],
            id="several-build-steps",
        ),
        pytest.param(
            [CLONE, PROFILE, invoke("dbt run"), invoke("dbt test")], [3], id="run-then-test"
        ),
        pytest.param(
            [CLONE, PROFILE, invoke("dbt source freshness"), invoke("dbt build -s source:fx+")],
            [4],
            id="freshness-then-build",
        ),
        pytest.param(
            [CLONE, PROFILE, invoke("dbt compile"), invoke("dbt docs generate")],
            [],
            id="nothing-built",
        ),
        pytest.param([CLONE, PROFILE, invoke("dbt retry")], [3], id="rerun-from-failure"),
    ],
)
def test_candidate_steps(names: list[str], chosen: list[int]) -> None:
    assert candidate_steps(steps(*names)) == chosen


def test_candidate_steps_come_in_index_order() -> None:
    shuffled = [Step(5, invoke("dbt snapshot")), Step(3, invoke("dbt seed")), Step(4, CLONE)]
    assert candidate_steps(shuffled) == [3, 5]


def test_a_dbt_cloud_run_step_is_a_step_info() -> None:
    """The Admin API client's RunStep (index, name, status...) fits without adapting."""

    @dataclass(frozen=True)
    class RunStep:
        index: int
        name: str
        status: int
        id: int | None = None

    run: list[StepInfo] = [RunStep(1, CLONE, 10), RunStep(2, invoke("dbt build"), 20)]
    assert candidate_steps(run) == [2]


@pytest.mark.parametrize(
    ("name", "built"),
    [
        ("green", True),
        ("failing", True),
        ("retry", True),  # dbt retry carries the retried command's which: build
        ("multistep/1-seed", True),
        ("multistep/2-run", True),
        ("multistep/3-snapshot", True),
        ("legacy/v10", True),
        ("docs", False),  # generate: every node "success", nothing built
        ("multistep/4-test", False),
    ],
)
def test_is_build_reads_args_which(name: str, built: bool) -> None:
    assert is_build(results(name)) is built


@pytest.mark.parametrize(
    ("command", "built"),
    [("dbt run --select x", True), ("dbt docs generate", False), (None, False)],
)
def test_is_build_without_which_reads_the_command(command: str | None, built: bool) -> None:
    old = replace(results("green"), which=None, invocation_command=command)
    assert is_build(old) is built


def test_a_step_named_build_that_ran_generate_is_not_a_build() -> None:
    """The name only nominates: a renamed or custom step is confirmed by args.which."""
    assert candidate_steps(steps(invoke("dbt build"))) == [1]
    assert build_of([(1, results("docs"))]).statuses == {}


def test_combine_several_build_steps() -> None:
    build = combine([results(f"multistep/{s}") for s in ("1-seed", "2-run", "3-snapshot")])
    assert build.status(f"seed.{P}.raw_orders") == "success"
    assert build.status(f"model.{P}.revenue_daily") == "success"
    assert build.status(f"snapshot.{P}.customers_snapshot") == "success"
    assert build.status(f"model.{P}.customers") is None  # the run step did not select it
    assert build.commands == (
        "dbt seed",
        "dbt run --select +revenue_daily +revenue_summary",
        "dbt snapshot",
    )
    assert len(build.invocation_ids) == 3


def test_build_of_leaves_out_test_and_docs_steps() -> None:
    pairs = [
        (i, results(f"multistep/{s}"))
        for i, s in enumerate(("1-seed", "2-run", "3-snapshot", "4-test"), start=3)
    ]
    build = build_of([*pairs, (7, results("docs"))])
    assert build.commands == (
        "dbt seed",
        "dbt run --select +revenue_daily +revenue_summary",
        "dbt snapshot",
    )
    assert not any(uid.startswith("test.") for uid in build.statuses)


def test_build_of_sorts_by_step_index() -> None:
    build = build_of([(5, results("retry")), (4, results("failing"))])
    assert build.commands == (
        "dbt build --vars {scenario: failing}",
        "dbt retry --vars {scenario: green}",
    )


def test_a_later_step_overrides_an_earlier_status() -> None:
    """A failing build, then a retry that fixed it: the retry's statuses stand."""
    build = combine([results("failing"), results("retry")])
    assert build.status(f"model.{P}.revenue_daily") == "success"
    assert build.status(f"model.{P}.customers") == "success"
    assert build.status(f"model.{P}.orders") == "success"  # from the first step


def test_a_later_error_overrides_an_earlier_success() -> None:
    build = combine([results("green"), results("failing")])
    assert build.status(f"model.{P}.revenue_daily") == "error"


def test_a_later_skip_leaves_an_earlier_success_standing() -> None:
    """Skipped means that step left the table alone: it is the one the earlier step built."""
    build = combine([results("green"), results("failing")])
    assert results("failing").statuses()[f"model.{P}.customers"] == "skipped"
    assert build.status(f"model.{P}.customers") == "success"


def test_a_skip_with_nothing_before_it_stays_skipped() -> None:
    assert combine([results("failing")]).status(f"model.{P}.customers") == "skipped"


def test_combine_of_nothing_is_an_empty_build() -> None:
    build = combine([])
    assert (build.statuses, build.commands, build.status("model.x.y")) == ({}, (), None)
