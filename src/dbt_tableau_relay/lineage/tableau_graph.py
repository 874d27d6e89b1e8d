"""Tableau's Metadata API for lineage: the queries, and what in the answers holds an extract.

Pure: builds queries and reads answers (plain dicts); `tableau_metadata.py`
sends them. What holds an extract (docs/tableau-rest.md, "Metadata API"):

- a published data source with `hasExtracts`;
- a workbook one of whose embedded data sources has an extract and reads the
  table itself. An embedded data source connected to a published one
  (`upstreamDatasources`) lists that one's tables as its own upstream tables
  but holds no extract: the published data source is refreshed, not the
  workbook, which then shows the new data anyway;
- a live connection, published or embedded, never: there is nothing to
  refresh (Tableau answers 409090).

Tableau's filters match a table's `name` exactly, while dbt's `relation_name`
keeps the model's case and Snowflake stores unquoted names upper case, so a
query asks for each identifier as dbt spells it, upper and lower case; the
answer is then matched on database, schema and name case-insensitively,
quotes removed (`model.normalize_relation`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from dbt_tableau_relay.lineage.model import ItemKind, TableauItem, normalize_relation

Found = list[tuple[TableauItem, frozenset[str]]]

TABLES_CONNECTION = "databaseTablesConnection"
NAMES_PER_QUERY = 300  # identifier spellings per query: keeps each request a few kB

TABLES_QUERY = """
query relayTablesDownstream($names: [String], $first: Int, $after: String) {
  databaseTablesConnection(filter: {nameWithin: $names}, first: $first, after: $after) {
    nodes {
      name
      schema
      database { name }
      downstreamDatasources { luid name projectName vizportalUrlId hasExtracts }
      downstreamWorkbooks {
        luid name projectName vizportalUrlId
        embeddedDatasources {
          name
          hasExtracts
          upstreamTables { name schema database { name } }
          upstreamDatasources { luid }
        }
      }
    }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}
"""

URL_ID_CONNECTIONS: dict[ItemKind, str] = {
    "workbook": "workbooksConnection",
    "datasource": "publishedDatasourcesConnection",
}

_URL_ID_QUERY = """
query relayByUrlId($ids: [String], $first: Int, $after: String) {
  %s(filter: {vizportalUrlIdWithin: $ids}, first: $first, after: $after) {
    nodes { luid name projectName vizportalUrlId }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}
"""

# .../#/site/SITE/workbooks/N[/...] or, on the default site, .../#/workbooks/N
_URL = re.compile(r"#/(?:site/[^/]+/)?(?P<what>workbooks|datasources)/(?P<id>\d+)(?:[/?]|$)")


# -- tables to the extracts that read them ---------------------------------------


def table_names(relations: Iterable[str]) -> list[str]:
    """The table `name`s to ask Tableau for: each identifier as spelled, upper and lower case."""
    names: dict[str, None] = {}
    for relation in relations:
        identifier = relation.strip().rsplit(".", 1)[-1].strip().strip('"`[]')
        if identifier:
            names.update(dict.fromkeys((identifier, identifier.upper(), identifier.lower())))
    return list(names)


def tables_queries(relations: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The Metadata API queries (text, variables) that find the tables behind `relations`."""
    names = table_names(relations)
    for start in range(0, len(names), NAMES_PER_QUERY):
        yield TABLES_QUERY, {"names": names[start : start + NAMES_PER_QUERY]}


def extract_items(tables: Iterable[Mapping[str, Any]], relations: Iterable[str]) -> Found:
    """Each item holding an extract that reads one of `relations`, with those it reads.

    `tables`: the `nodes` of TABLES_QUERY's answers. `relations`: every relation
    the run touched, whatever its status; each item comes with the normalized
    names of those of them it reads (the decision needs the errored ones too).
    """
    wanted = {normalize_relation(r) for r in relations}
    found: dict[tuple[ItemKind, str], tuple[TableauItem, set[str]]] = {}
    for table in tables:
        relation = table_relation(table)
        if relation not in wanted:
            continue  # same name, another database or schema
        for source in _list(table, "downstreamDatasources"):
            if source.get("hasExtracts") is True and source.get("luid"):
                _note(found, _item("datasource", source), {relation})
        for workbook in _list(table, "downstreamWorkbooks"):
            if (reads := own_extract_tables(workbook) & wanted) and workbook.get("luid"):
                _note(found, _item("workbook", workbook), reads)
    ordered = sorted(found.values(), key=lambda pair: (pair[0].kind, pair[0].path, pair[0].luid))
    return [(item, frozenset(reads)) for item, reads in ordered]


def own_extract_tables(workbook: Mapping[str, Any]) -> set[str]:
    """The tables a workbook's own extracts read (not those it reads through published ones)."""
    tables: set[str] = set()
    for embedded in _list(workbook, "embeddedDatasources"):
        if embedded.get("hasExtracts") is True and not _list(embedded, "upstreamDatasources"):
            tables.update(filter(None, map(table_relation, _list(embedded, "upstreamTables"))))
    return tables


def table_relation(table: Mapping[str, Any]) -> str | None:
    """`database.schema.name` of a DatabaseTable node, normalized; None if a part is missing."""
    database = table.get("database") or {}
    parts = (database.get("name"), table.get("schema"), table.get("name"))
    if not all(isinstance(p, str) and p.strip() for p in parts):
        return None
    return normalize_relation(".".join(str(p) for p in parts))


# -- Tableau URLs' numeric ids to items ----------------------------------------------


def url_id_of(url: str) -> tuple[ItemKind, str] | None:
    """("workbook", "12") from `https://host/#/site/sales/workbooks/12/views`; None if not one."""
    found = _URL.search(url)
    if found is None:
        return None
    kind: ItemKind = "workbook" if found.group("what") == "workbooks" else "datasource"
    return kind, found.group("id")


def url_ids_query(kind: ItemKind, ids: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """The query (text, variables) for the items whose vizportalUrlId is one of `ids`."""
    return _URL_ID_QUERY % URL_ID_CONNECTIONS[kind], {"ids": sorted({str(i) for i in ids})}


def resolve_url_ids(kind: ItemKind, nodes: Iterable[Mapping[str, Any]]) -> dict[str, TableauItem]:
    """Items by vizportalUrlId, from the `nodes` of `url_ids_query`'s answers."""
    found: dict[str, TableauItem] = {}
    for node in nodes:
        url_id = node.get("vizportalUrlId")
        if isinstance(url_id, str) and node.get("luid"):
            found[url_id] = _item(kind, node)
    return found


# -- helpers ------------------------------------------------------------------------


def _item(kind: ItemKind, node: Mapping[str, Any]) -> TableauItem:
    project = node.get("projectName")
    return TableauItem(
        kind,
        str(node["luid"]).lower(),
        str(node.get("name") or node["luid"]),
        str(project) if project else None,
    )


def _note(
    found: dict[tuple[ItemKind, str], tuple[TableauItem, set[str]]],
    item: TableauItem,
    reads: set[str],
) -> None:
    _, seen = found.setdefault((item.kind, item.luid), (item, set()))
    seen.update(reads)


def _list(node: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """A list field of a node; Tableau answers null for some, and nodes may be null."""
    value = node.get(key)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []
