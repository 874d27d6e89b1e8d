"""Which steps of a dbt Cloud run built something, and what they built together.

dbt Cloud serves the last step's artifacts by default, and a job with
"generate docs" ends with `dbt docs generate`, whose run_results.json lists
every node as `success` without having built anything. So the build steps are
chosen by name first (`Invoke dbt with \\`dbt build\\``, `... dbt run --select x`,
`dbt seed`, `dbt snapshot`, `dbt retry`), which costs no download, then each is
confirmed by the `args.which` of its own run_results (`generate` never is).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .artifacts import RunResults

# The commands that write to the warehouse. `dbt retry` re-runs the previous
# command; its run_results carry that command's args.which (build, run...).
BUILD_COMMANDS = frozenset({"build", "run", "seed", "snapshot"})
_CANDIDATE_COMMANDS = BUILD_COMMANDS | {"retry"}

# Every dbt subcommand: the first of them after `dbt` is the command, so a
# global flag with a value (`dbt --log-format json run`) is stepped over.
_SUBCOMMANDS = frozenset(
    {
        "build", "run", "seed", "snapshot", "retry", "test", "compile", "docs", "source",
        "deps", "clean", "debug", "ls", "list", "parse", "show", "run-operation", "clone",
        "init", "freshness",
    }
)  # fmt: skip
_INVOKED = re.compile(r"`([^`]*)`")

# A later step that did not execute a node leaves the earlier status standing.
_NOT_EXECUTED = frozenset({"skipped", "no-op", "reused"})


class StepInfo(Protocol):
    """What lineage reads of a run step; dbt_cloud.RunStep satisfies it."""

    @property
    def index(self) -> int: ...  # 1-based, as the artifacts' ?step= is

    @property
    def name(self) -> str: ...  # "Invoke dbt with `dbt build`"


@dataclass(frozen=True, slots=True)
class Step:
    """A plain StepInfo, for callers and tests that have no RunStep."""

    index: int
    name: str


@dataclass(frozen=True, slots=True)
class BuildResult:
    """The build steps of one run, combined: each node's last executed status."""

    statuses: Mapping[str, str] = field(default_factory=dict, hash=False)
    commands: tuple[str, ...] = ()  # each step's invocation command, in order
    invocation_ids: tuple[str, ...] = ()

    def status(self, unique_id: str) -> str | None:
        """The node's status, or None when no build step ran it."""
        return self.statuses.get(unique_id)


def step_command(name: str) -> str | None:
    """The dbt subcommand a step's name invokes: `build` for "Invoke dbt with `dbt build`"."""
    for quoted in _INVOKED.findall(name) or [name]:
        command = _command_of(quoted)
        if command is not None:
            return command
    return None


def candidate_steps(steps: Sequence[StepInfo]) -> list[int]:
    """Indexes of the steps whose name says they ran build/run/seed/snapshot/retry."""
    chosen = [s.index for s in steps if step_command(s.name) in _CANDIDATE_COMMANDS]
    return sorted(chosen)


def is_build(run_results: RunResults) -> bool:
    """True when these run_results come from a command that builds (never `generate`)."""
    which = run_results.which
    if which is None and run_results.invocation_command:
        which = _command_of(run_results.invocation_command)  # artifacts without args.which
    return which in BUILD_COMMANDS


def combine(results: Sequence[RunResults]) -> BuildResult:
    """The build steps' results, in step order, as one BuildResult.

    A later step's status for a node overrides an earlier one (a `dbt run
    --select orders` after a failed build fixes orders), except that a later
    skipped / no-op / reused, which did not execute the node, leaves the
    earlier status standing: the table that step left alone is still the one
    the earlier step built.
    """
    statuses: dict[str, str] = {}
    for step in results:
        for uid, status in step.statuses().items():
            if status not in _NOT_EXECUTED or uid not in statuses:
                statuses[uid] = status
    return BuildResult(
        statuses=statuses,
        commands=tuple(r.invocation_command or r.which or "?" for r in results),
        invocation_ids=tuple(r.invocation_id for r in results if r.invocation_id),
    )


def build_of(step_results: Iterable[tuple[int, RunResults]]) -> BuildResult:
    """`combine` of the (step index, run_results) pairs that `is_build` confirms."""
    ordered = sorted(step_results, key=lambda pair: pair[0])
    return combine([results for _, results in ordered if is_build(results)])


def _command_of(command_line: str) -> str | None:
    try:
        words = shlex.split(command_line)
    except ValueError:  # an unbalanced quote: the plain words still tell the command
        words = command_line.split()
    if "dbt" not in words:
        return None
    after = words[words.index("dbt") + 1 :]
    return next((w for w in after if w in _SUBCOMMANDS), None)
