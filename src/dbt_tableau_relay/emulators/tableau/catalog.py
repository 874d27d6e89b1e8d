"""What the Metadata API sees: database tables and how each item connects to them.

A published data source reads `tables` (it holds an extract when it is
`refreshable`, else it is a live connection). A workbook holds embedded data
sources, each reading tables itself (with or without an extract) or connected
to one published data source. State-file form (keys of `content.py`'s format)::

    {
      "tables": [
        {"database": "ANALYTICS", "schema": "MARTS", "name": "FCT_ORDERS",
         "connection_type": "snowflake", "luid": "optional-uuid"}
      ],
      "datasources": [
        {"path": "Sales/Orders", "tables": ["ANALYTICS.MARTS.FCT_ORDERS"]},
        {"path": "Sales/Live Orders", "refreshable": false,
         "tables": ["ANALYTICS.MARTS.FCT_ORDERS"]}
      ],
      "workbooks": [
        {"path": "Sales/Pipeline", "embedded_datasources": [
          {"name": "Pipeline", "has_extracts": true, "tables": ["ANALYTICS.MARTS.PIPELINE"]}]},
        {"path": "Sales/Orders Explorer", "embedded_datasources": [
          {"name": "Orders", "published": "Sales/Orders"}]},
        {"path": "Sales/Live Pipeline", "embedded_datasources": [
          {"name": "Pipeline", "tables": ["ANALYTICS.MARTS.PIPELINE"]}]}
      ]
    }

A table is named `DATABASE.SCHEMA.NAME`, exactly as the database stores it
(Snowflake: upper case); names differing only in case are different tables,
as quoted identifiers are. Tables that items name but `tables` does not list
are created (connection type snowflake). A workbook given
`embedded_datasources` and no `refreshable` is refreshable when one of them
has an extract, as on Tableau, where refreshing a workbook without one
answers 409090.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONNECTION_TYPE = "snowflake"


def metadata_id(kind: str, key: str) -> str:
    """The Metadata API's own id of an object (not its LUID), stable across runs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dbt-tableau-relay/emulator/metadata/{kind}/{key}"))


@dataclass(frozen=True)
class Table:
    """A database table as Tableau's catalog records it."""

    luid: str
    database: str
    schema: str
    name: str
    connection_type: str = DEFAULT_CONNECTION_TYPE

    @property
    def key(self) -> str:
        return f"{self.database}.{self.schema}.{self.name}"

    @property
    def id(self) -> str:
        return metadata_id("table", self.key)

    @property
    def full_name(self) -> str:
        """Tableau writes schema and name bracketed: `[MARTS].[FCT_ORDERS]`."""
        return f"[{self.schema}].[{self.name}]"


@dataclass
class Embedded:
    """A workbook's embedded data source: reads tables, or connects to a published one."""

    name: str
    has_extracts: bool = False
    tables: list[Table] = field(default_factory=list)
    published: str | None = None  # the path of a published data source


class Catalog:
    """The site's database tables, by `DATABASE.SCHEMA.NAME`. Not locked: callers lock."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}

    def add_table(
        self,
        name: str,
        *,
        connection_type: str | None = None,
        luid: str | None = None,
    ) -> Table:
        """The table named `DATABASE.SCHEMA.NAME`, created if new."""
        database, schema, table = split_table(name)
        key = f"{database}.{schema}.{table}"
        if key in self.tables:
            return self.tables[key]
        found = Table(
            luid or metadata_id("table-luid", key),
            database,
            schema,
            table,
            connection_type or DEFAULT_CONNECTION_TYPE,
        )
        self.tables[key] = found
        return found

    def resolve(self, names: Iterable[Any], what: str) -> list[Table]:
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ValueError(f"{what}: tables must be a list of DATABASE.SCHEMA.NAME strings")
        return [self.add_table(str(n)) for n in names]

    def load(self, entries: Iterable[Mapping[str, Any]]) -> None:
        for entry in entries:
            _check_keys(entry, {"database", "schema", "name", "connection_type", "luid"}, "table")
            missing = [k for k in ("database", "schema", "name") if not entry.get(k)]
            if missing:
                raise ValueError(f"table: missing {', '.join(missing)}")
            self.add_table(
                f"{entry['database']}.{entry['schema']}.{entry['name']}",
                connection_type=entry.get("connection_type"),
                luid=entry.get("luid"),
            )

    def embedded(self, entries: Any) -> list[Embedded]:
        """Embedded data sources from their state-file form."""
        if not isinstance(entries, list):
            raise ValueError("embedded_datasources must be a list of objects")
        return [self._embedded(entry) for entry in entries]

    def _embedded(self, entry: Any) -> Embedded:
        _check_keys(entry, {"name", "has_extracts", "tables", "published"}, "embedded datasource")
        if not entry.get("name"):
            raise ValueError("embedded datasource: a name is required")
        has_extracts = entry.get("has_extracts", False)
        if not isinstance(has_extracts, bool):
            raise ValueError("embedded datasource: has_extracts must be true or false")
        published = entry.get("published")
        if published is not None and (has_extracts or entry.get("tables")):
            # Its tables and its extract are the published data source's.
            raise ValueError(
                "embedded datasource: one connected to a published data source has no "
                "tables or extract of its own"
            )
        tables = self.resolve(entry.get("tables") or [], "embedded datasource")
        return Embedded(str(entry["name"]), has_extracts, tables, published and str(published))

    def to_state(self) -> list[dict[str, Any]]:
        return [
            {
                "database": t.database,
                "schema": t.schema,
                "name": t.name,
                "connection_type": t.connection_type,
                "luid": t.luid,
            }
            for t in self.tables.values()
        ]


def embedded_state(embedded: Embedded) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": embedded.name}
    if embedded.published:
        entry["published"] = embedded.published
        return entry
    entry["has_extracts"] = embedded.has_extracts
    entry["tables"] = [t.key for t in embedded.tables]
    return entry


def split_table(name: str) -> tuple[str, str, str]:
    parts = name.split(".")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise ValueError(f"a table is named DATABASE.SCHEMA.NAME, not {name!r}")
    database, schema, table = (p.strip() for p in parts)
    return database, schema, table


def _check_keys(entry: Any, allowed: set[str], what: str) -> None:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{what} must be a JSON object")
    if unknown := sorted(set(entry) - allowed):
        raise ValueError(f"{what}: unknown key(s) {', '.join(unknown)}")
