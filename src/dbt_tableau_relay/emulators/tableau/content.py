"""The site's content: projects, workbooks and data sources, demo or from a state file.

LUIDs are stable: uuid5 of "dbt-tableau-relay/emulator/{kind}/{path}", so the
same path gets the same LUID in every run, unless the state file gives one.

State file format (JSON; also what `Content.to_state()` writes and what
`POST /_emulator/content` merges in)::

    {
      "projects": [
        {"name": "Finance"},
        {"name": "Regional", "parent": "Finance", "luid": "optional-uuid",
         "description": "optional"}
      ],
      "workbooks": [
        {"name": "EMEA Revenue", "project": "Finance/Regional"}
      ],
      "datasources": [
        {"name": "Live Inventory", "project": "Sales", "refreshable": false,
         "connection_type": "postgres"},
        {"name": "Legacy Ledger", "project": "Finance",
         "refresh_outcome": {"finish_code": 1, "notes": "why the refresh failed"}}
      ]
    }

`parent` and `project` are project paths ("A/B"); `{"path": "A/B/Name"}` is a
shorthand for name plus parent/project. Projects that items name but the file
does not list are created. `refreshable` (default true) false means the item
has no extract: a refresh answers 409090. `refresh_outcome.finish_code` is the
finishCode its refresh jobs end with (0 success, 1 failed with `notes`,
2 cancelled). `vizportal_url_id` (optional) is the item's number in Tableau's
URLs (`.../#/site/SITE/workbooks/N`), by default the next free one. What the
Metadata API sees, `tables` and each item's connections, is in `catalog.py`.
Unknown keys are an error.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dbt_tableau_relay.emulators.tableau.catalog import (
    Catalog,
    Embedded,
    Table,
    embedded_state,
)

ItemKind = Literal["workbook", "datasource"]
Kind = Literal["project", "workbook", "datasource"]
KINDS: tuple[ItemKind, ...] = ("workbook", "datasource")

DEFAULT_PROJECT = "Default"
_DEFAULT_DESCRIPTION = "The default project that was automatically created by Tableau."


def stable_luid(kind: Kind, path: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dbt-tableau-relay/emulator/{kind}/{path}"))


def split_path(path: str) -> tuple[str, str]:
    """("Finance/Regional", "EMEA Revenue") from "Finance/Regional/EMEA Revenue"."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        raise ValueError(f"empty path: {path!r}")
    return "/".join(parts[:-1]), parts[-1]


@dataclass
class RefreshOutcome:
    """How an item's refresh jobs end: finishCode and, for failures, notes."""

    finish_code: int = 0
    notes: str | None = None

    def __post_init__(self) -> None:
        if self.finish_code not in (0, 1, 2):
            raise ValueError("finish_code must be 0 (success), 1 (failed) or 2 (cancelled)")


@dataclass
class Project:
    luid: str
    name: str
    path: str
    parent_luid: str | None
    description: str = ""
    created_at: float = field(default_factory=time.time)


@dataclass
class Item:
    """A workbook or a published data source."""

    kind: ItemKind
    luid: str
    name: str
    project: Project
    content_url: str
    number: int
    refreshable: bool = True
    outcome: RefreshOutcome = field(default_factory=RefreshOutcome)
    connection_type: str = "snowflake"
    created_at: float = field(default_factory=time.time)
    tables: list[Table] = field(default_factory=list)  # a data source's upstream tables
    embedded: list[Embedded] = field(default_factory=list)  # a workbook's data sources

    @property
    def path(self) -> str:
        return f"{self.project.path}/{self.name}"

    @property
    def url_id(self) -> str:
        """vizportalUrlId: the number in the item's web page URL."""
        return str(self.number)


class Content:
    """Projects and items of one site, in creation order. Not locked: callers lock."""

    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.items: dict[str, Item] = {}
        self._project_paths: dict[str, Project] = {}
        self._item_paths: dict[tuple[ItemKind, str], Item] = {}
        self._content_urls: set[tuple[ItemKind, str]] = set()
        self._numbers: set[int] = set()
        self.catalog = Catalog()

    def add_project(self, path: str, *, luid: str | None = None, description: str = "") -> Project:
        """The project at `path`, created with its ancestors if missing."""
        parent_path, name = split_path(path)
        full = f"{parent_path}/{name}" if parent_path else name
        if full in self._project_paths:
            return self._project_paths[full]
        parent = self.add_project(parent_path) if parent_path else None
        project = Project(
            luid or stable_luid("project", full),
            name,
            full,
            parent.luid if parent else None,
            description or (_DEFAULT_DESCRIPTION if full == DEFAULT_PROJECT else ""),
        )
        self.projects[project.luid] = project
        self._project_paths[full] = project
        return project

    def add_item(
        self,
        kind: ItemKind,
        path: str,
        *,
        luid: str | None = None,
        refreshable: bool = True,
        outcome: RefreshOutcome | None = None,
        connection_type: str | None = None,
        number: int | None = None,
    ) -> Item:
        project_path, name = split_path(path)
        project = self.add_project(project_path or DEFAULT_PROJECT)
        full = f"{project.path}/{name}"
        if (kind, full) in self._item_paths:
            raise ValueError(f"{kind} {full!r} already exists")
        item_luid = luid or stable_luid(kind, full)
        item = Item(
            kind,
            item_luid,
            name,
            project,
            self._unique_content_url(kind, name, item_luid),
            self._take_number(number),
            refreshable,
            outcome or RefreshOutcome(),
            connection_type or "snowflake",
        )
        self.items[item.luid] = item
        self._item_paths[(kind, full)] = item
        return item

    def connect(
        self,
        item: Item,
        *,
        tables: list[Any] | None = None,
        embedded: list[Any] | None = None,
    ) -> None:
        """Give an item its connections (state-file form, see catalog.py)."""
        if tables is not None:
            if item.kind != "datasource":
                raise ValueError("workbook: tables belong to its embedded_datasources")
            item.tables = self.catalog.resolve(tables, item.kind)
        if embedded is not None:
            if item.kind != "workbook":
                raise ValueError("datasource: embedded_datasources belong to workbooks")
            item.embedded = self.catalog.embedded(embedded)

    def published(self, path: str) -> Item | None:
        """The published data source at `path`, as an embedded one names it."""
        parent, name = split_path(path)
        return self._item_paths.get(("datasource", f"{parent}/{name}"))

    def republish(self, kind: ItemKind, path: str, luid: str) -> Item:
        """Replace the item at `path` by a new one with another LUID, as a re-publish does."""
        old = self.items.pop(self.luid(kind, path))
        del self._item_paths[(kind, f"{old.project.path}/{old.name}")]
        new = self.add_item(
            kind,
            path,
            luid=luid,
            refreshable=old.refreshable,
            outcome=old.outcome,
            connection_type=old.connection_type,
        )
        new.tables, new.embedded = old.tables, old.embedded
        return new

    def luid(self, kind: Kind, path: str) -> str:
        parent, name = split_path(path)
        full = f"{parent}/{name}" if parent else name
        found = (
            self._project_paths.get(full)
            if kind == "project"
            else self._item_paths.get((kind, full))
        )
        if found is None:
            raise KeyError(f"no {kind} at {path!r}")
        return found.luid

    def item(self, kind: ItemKind, luid: str) -> Item | None:
        found = self.items.get(luid)
        return found if found is not None and found.kind == kind else None

    def of_kind(self, kind: ItemKind) -> list[Item]:
        return [i for i in self.items.values() if i.kind == kind]

    def to_state(self) -> dict[str, Any]:
        """The state-file form of this content (LUIDs included)."""
        projects = [_project_state(p) for p in self.projects.values()]
        items = {f"{kind}s": [_item_state(i) for i in self.of_kind(kind)] for kind in KINDS}
        return {"projects": projects, "tables": self.catalog.to_state()} | items

    def load(self, state: Mapping[str, Any]) -> None:
        """Merge state-file content in; a malformed entry raises ValueError."""
        _check_keys(state, {"projects", "tables", "workbooks", "datasources"}, "state")
        for entry in _entries(state, "projects"):
            _check_keys(entry, {"name", "parent", "path", "luid", "description"}, "project")
            path = _entry_path(entry, "parent")
            self.add_project(path, luid=entry.get("luid"), description=entry.get("description", ""))
        self.catalog.load(_entries(state, "tables"))
        for kind in KINDS:
            for entry in _entries(state, f"{kind}s"):
                self._load_item(kind, entry)
        self._check_published()

    def _load_item(self, kind: ItemKind, entry: Mapping[str, Any]) -> None:
        allowed = {"name", "project", "path", "luid", "refreshable", "refresh_outcome"}
        links = {"tables"} if kind == "datasource" else {"embedded_datasources"}
        _check_keys(entry, allowed | links | {"connection_type", "vizportal_url_id"}, kind)
        raw = entry.get("refresh_outcome") or {}
        _check_keys(raw, {"finish_code", "notes"}, "refresh_outcome")
        refreshable = entry.get("refreshable", True)
        if not isinstance(refreshable, bool):
            raise ValueError(f"{kind}: refreshable must be true or false")
        number = entry.get("vizportal_url_id")
        item = self.add_item(
            kind,
            _entry_path(entry, "project"),
            luid=entry.get("luid"),
            refreshable=refreshable,
            outcome=RefreshOutcome(int(raw.get("finish_code", 0)), raw.get("notes")),
            connection_type=entry.get("connection_type"),
            number=int(number) if number is not None else None,
        )
        self.connect(item, tables=entry.get("tables"), embedded=entry.get("embedded_datasources"))
        if "embedded_datasources" in entry and "refreshable" not in entry:
            item.refreshable = any(e.has_extracts for e in item.embedded)

    def _check_published(self) -> None:
        for workbook in self.of_kind("workbook"):
            for embedded in workbook.embedded:
                if embedded.published and self.published(embedded.published) is None:
                    raise ValueError(
                        f"workbook {workbook.path!r}: no published data source "
                        f"{embedded.published!r}"
                    )

    def _take_number(self, wanted: int | None) -> int:
        # Never reused, so a re-published item gets a new URL as on Tableau.
        number = wanted if wanted is not None else max(self._numbers, default=0) + 1
        if number < 1 or number in self._numbers:
            raise ValueError(f"vizportal_url_id {number} is taken or not a positive number")
        self._numbers.add(number)
        return number

    def _unique_content_url(self, kind: ItemKind, name: str, luid: str) -> str:
        # Tableau strips what URLs cannot hold and suffixes a number on a clash.
        base = re.sub(r"[^A-Za-z0-9_-]", "", name) or kind
        url = base if (kind, base) not in self._content_urls else f"{base}_{int(luid[:8], 16)}"
        self._content_urls.add((kind, url))
        return url


def content_from_state(state: Mapping[str, Any]) -> Content:
    content = Content()
    content.add_project(DEFAULT_PROJECT)  # every Tableau site has one
    content.load(state)
    return content


def _project_state(project: Project) -> dict[str, Any]:
    parent, name = split_path(project.path)
    entry: dict[str, Any] = {"name": name}
    if parent:
        entry["parent"] = parent
    entry["luid"] = project.luid
    if project.description:
        entry["description"] = project.description
    return entry


def _item_state(item: Item) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": item.name, "project": item.project.path, "luid": item.luid}
    if not item.refreshable:
        entry["refreshable"] = False
    if item.outcome != RefreshOutcome():
        entry["refresh_outcome"] = {
            "finish_code": item.outcome.finish_code,
            "notes": item.outcome.notes,
        }
    if item.kind == "datasource":
        entry["connection_type"] = item.connection_type
        entry["tables"] = [t.key for t in item.tables]
    else:
        entry["embedded_datasources"] = [embedded_state(e) for e in item.embedded]
    entry["vizportal_url_id"] = item.number
    return entry


def _entries(state: Mapping[str, Any], key: str) -> Iterable[Mapping[str, Any]]:
    entries = state.get(key) or []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ValueError(f"{key} must be a list of objects")
    return entries


def _entry_path(entry: Mapping[str, Any], parent_key: str) -> str:
    if "path" in entry:
        return str(entry["path"])
    if "name" not in entry:
        raise ValueError(f"an entry needs a name or a path: {dict(entry)}")
    parent = entry.get(parent_key)
    return f"{parent}/{entry['name']}" if parent else str(entry["name"])


def _check_keys(entry: Any, allowed: set[str], what: str) -> None:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{what} must be a JSON object")
    if unknown := sorted(set(entry) - allowed):
        raise ValueError(f"{what}: unknown key(s) {', '.join(unknown)}")
