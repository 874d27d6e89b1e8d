"""The vocabulary the lineage modules share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ItemKind = Literal["workbook", "datasource"]
Action = Literal["refresh", "skip"]


def normalize_relation(name: str) -> str:
    """`database.schema.identifier` as Tableau and dbt can both be matched on.

    Case-insensitive (Snowflake stores unquoted names upper case, dbt keeps the
    model's case) and without quotes ("db"."schema"."t", `t`, [t]).
    """
    parts = [p.strip().strip('"`[]').lower() for p in name.split(".")]
    return ".".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class TableauItem:
    """A Tableau item that holds an extract, as lineage found it."""

    kind: ItemKind
    luid: str
    name: str
    project: str | None = None  # the project's name (Metadata API) or path

    @property
    def path(self) -> str:
        return f"{self.project}/{self.name}" if self.project else self.name


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    """One dbt node behind a decision, with its status in the run's build step."""

    unique_id: str
    status: str  # success | error | skipped | ... from run_results; "not run" when absent

    @property
    def name(self) -> str:
        return self.unique_id.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class Decision:
    """Refresh or skip one Tableau item for one run, and the nodes that decided it."""

    item: TableauItem
    action: Action
    nodes: tuple[NodeVerdict, ...]
    source: Literal["exposures", "tableau_lineage"]
    reason: str = ""
