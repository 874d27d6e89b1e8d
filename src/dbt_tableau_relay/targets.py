"""Target resolution: from `Project/Sub/Name` paths to Tableau items.

Pure functions over lists of projects and items, so the rules that decide
which workbook a path names are tested without a server. A path is read from
a top-level project down, the way Tableau's own tools name nested projects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from dbt_tableau_relay.errors import TargetError

ItemKind = Literal["workbook", "datasource"]


@dataclass(frozen=True)
class Project:
    luid: str
    name: str
    parent_luid: str | None


@dataclass(frozen=True)
class Item:
    """A workbook or published data source, with its full project path."""

    kind: ItemKind
    luid: str
    name: str
    project_path: str

    @property
    def path(self) -> str:
        return f"{self.project_path}/{self.name}" if self.project_path else self.name

    def __str__(self) -> str:
        return f"{self.kind} {self.path} ({self.luid})"


def project_paths(projects: Iterable[Project]) -> dict[str, str]:
    """Map each project LUID to its full path, e.g. `Finance/Regional`."""
    by_luid = {p.luid: p for p in projects}
    paths: dict[str, str] = {}

    def path_of(luid: str, seen: frozenset[str] = frozenset()) -> str:
        if luid in paths:
            return paths[luid]
        project = by_luid[luid]
        parent = project.parent_luid
        # A parent outside the listing (no permission to see it) or a cycle
        # ends the path where it can be read.
        if parent is None or parent not in by_luid or parent in seen:
            paths[luid] = project.name
        else:
            paths[luid] = f"{path_of(parent, seen | {luid})}/{project.name}"
        return paths[luid]

    for luid in by_luid:
        path_of(luid)
    return paths


def split_path(path: str) -> tuple[str, str]:
    """`Finance/Regional/EMEA Revenue` -> (`Finance/Regional`, `EMEA Revenue`)."""
    parts = [part.strip() for part in path.strip().strip("/").split("/")]
    if not parts or not parts[-1] or any(not part for part in parts):
        raise TargetError(f"{path!r} is not a valid path: use Project/Sub/Name")
    return "/".join(parts[:-1]), parts[-1]


def pick(kind: ItemKind, path: str, same_name: Iterable[Item]) -> Item:
    """Choose the one item that `path` names among the items sharing its name.

    A bare name (no project) is accepted when it is unique on the site.
    """
    project_path, name = split_path(path)
    candidates = sorted((i for i in same_name if i.name == name), key=lambda i: i.path)
    matches = [i for i in candidates if not project_path or i.project_path == project_path]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        elsewhere = f"; {kind}s with that name: {_names(candidates)}" if candidates else ""
        raise TargetError(f"no {kind} at {path!r}{elsewhere}")
    raise TargetError(
        f"{path!r} names {len(matches)} {kind}s: {_names(matches)}; give the full path"
    )


def items_with_paths(
    kind: ItemKind, raw: Iterable[tuple[str, str, str | None]], paths: Mapping[str, str]
) -> list[Item]:
    """Build Items from (luid, name, project_luid) triples and the project paths."""
    return [
        Item(kind=kind, luid=luid, name=name, project_path=paths.get(project or "", ""))
        for luid, name, project in raw
    ]


def _names(items: Iterable[Item]) -> str:
    return ", ".join(repr(i.path) for i in items)
