"""The part of Tableau's Metadata API (GraphQL) the relay uses, executed by graphql-core.

Names are Tableau's: `databaseTables` / `databaseTablesConnection`,
`publishedDatasources...`, `workbooks...`, filters `DatabaseTable_Filter`
etc. with `field` and `fieldWithin` keys, `first` / `after` / `offset`
paging with `nodes`, `pageInfo { hasNextPage endCursor }` and `totalCount`.
As on Tableau, results are ordered by `id` when no order is given, `first`
defaults to 100 and a `first` above the maximum page size (1000) is cut to it
with a MAX_PAGE_SIZE_EXCEEDED warning. Cursors are opaque; one of another
type, or `after` with `offset`, is an INVALID_ARGUMENT error.

`DatabaseTable.downstreamWorkbooks` is transitive, as Tableau's is: a
workbook connected to a published data source that reads the table is
downstream of it too (its embedded data source then lists the published one
in `upstreamDatasources`, and that one's tables in `upstreamTables`).
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from graphql import GraphQLError, GraphQLSchema, build_schema

from dbt_tableau_relay.emulators.tableau.catalog import Embedded, Table, metadata_id
from dbt_tableau_relay.emulators.tableau.content import Content, Item

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_FILTER = "id: ID, idWithin: [ID], luid: String, luidWithin: [String], name: String, "
_FILTER += "nameWithin: [String]"
_ITEM_FILTER = _FILTER + ", projectName: String, projectNameWithin: [String], "
_ITEM_FILTER += "vizportalUrlId: String, vizportalUrlIdWithin: [String]"
_PAGING = "first: Int, after: String, offset: Int"

SDL = f"""
type Query {{
  databaseTables(filter: DatabaseTable_Filter): [DatabaseTable!]!
  databaseTablesConnection({_PAGING}, filter: DatabaseTable_Filter): DatabaseTablesConnection!
  publishedDatasources(filter: PublishedDatasource_Filter): [PublishedDatasource!]!
  publishedDatasourcesConnection({_PAGING}, filter: PublishedDatasource_Filter):
    PublishedDatasourcesConnection!
  workbooks(filter: Workbook_Filter): [Workbook!]!
  workbooksConnection({_PAGING}, filter: Workbook_Filter): WorkbooksConnection!
}}
input DatabaseTable_Filter {{ {_FILTER}, schema: String, schemaWithin: [String],
  fullName: String, fullNameWithin: [String], connectionType: String,
  connectionTypeWithin: [String] }}
input PublishedDatasource_Filter {{ {_ITEM_FILTER} }}
input Workbook_Filter {{ {_ITEM_FILTER}, projectLuid: String, projectLuidWithin: [String] }}
type PageInfo {{ hasNextPage: Boolean! hasPreviousPage: Boolean!
  startCursor: String endCursor: String }}
type DatabaseTablesConnection {{ nodes: [DatabaseTable!]! pageInfo: PageInfo! totalCount: Int! }}
type PublishedDatasourcesConnection {{ nodes: [PublishedDatasource!]! pageInfo: PageInfo!
  totalCount: Int! }}
type WorkbooksConnection {{ nodes: [Workbook!]! pageInfo: PageInfo! totalCount: Int! }}
type Database {{ id: ID! name: String connectionType: String }}
type DatabaseTable {{ id: ID! luid: String! name: String schema: String fullName: String
  connectionType: String isEmbedded: Boolean database: Database
  downstreamDatasources: [PublishedDatasource!]! downstreamWorkbooks: [Workbook!]! }}
type PublishedDatasource {{ id: ID! luid: String! name: String vizportalUrlId: String
  projectName: String projectLuid: String hasExtracts: Boolean
  upstreamTables: [DatabaseTable!]! downstreamWorkbooks: [Workbook!]! }}
type EmbeddedDatasource {{ id: ID! name: String hasExtracts: Boolean
  upstreamTables: [DatabaseTable!]! upstreamDatasources: [PublishedDatasource!]!
  workbook: Workbook }}
type Workbook {{ id: ID! luid: String! name: String vizportalUrlId: String
  projectName: String projectLuid: String embeddedDatasources: [EmbeddedDatasource!]!
  upstreamTables: [DatabaseTable!]! upstreamDatasources: [PublishedDatasource!]! }}
"""

SCHEMA: GraphQLSchema = build_schema(SDL)


def error(code: str, message: str, severity: str = "ERROR") -> GraphQLError:
    return GraphQLError(message, extensions={"severity": severity, "code": code})


class Graph:
    """One query's view of the content, with who reads which table worked out once."""

    def __init__(self, content: Content) -> None:
        self.content = content
        self.readers: dict[str, list[Item]] = {}  # table key -> published sources reading it
        self.downstream: dict[str, list[Item]] = {}  # table key -> workbooks, transitively
        for source in content.of_kind("datasource"):
            for table in source.tables:
                self.readers.setdefault(table.key, []).append(source)
        for workbook in content.of_kind("workbook"):
            for key in {t.key for t in self.workbook_tables(workbook)}:
                self.downstream.setdefault(key, []).append(workbook)

    def embedded_tables(self, embedded: Embedded) -> list[Table]:
        published = self.published_of(embedded)
        return list(published.tables) if published else list(embedded.tables)

    def published_of(self, embedded: Embedded) -> Item | None:
        return self.content.published(embedded.published) if embedded.published else None

    def workbook_tables(self, workbook: Item) -> list[Table]:
        seen: dict[str, Table] = {}
        for embedded in workbook.embedded:
            seen.update((t.key, t) for t in self.embedded_tables(embedded))
        return list(seen.values())


class TableView:
    def __init__(self, graph: Graph, table: Table) -> None:
        self.graph, self.table = graph, table
        self.id, self.luid, self.name = table.id, table.luid, table.name
        self.schema, self.fullName = table.schema, table.full_name
        self.connectionType, self.isEmbedded = table.connection_type, False
        self.database = {
            "id": metadata_id("database", table.database),
            "name": table.database,
            "connectionType": table.connection_type,
        }

    @property
    def downstreamDatasources(self) -> list[ItemView]:
        return [ItemView(self.graph, s) for s in self.graph.readers.get(self.table.key, [])]

    @property
    def downstreamWorkbooks(self) -> list[ItemView]:
        return [ItemView(self.graph, w) for w in self.graph.downstream.get(self.table.key, [])]


class ItemView:
    """A published data source or a workbook."""

    def __init__(self, graph: Graph, item: Item) -> None:
        self.graph, self.item = graph, item
        self.id = metadata_id(item.kind, item.luid)
        self.luid, self.name, self.vizportalUrlId = item.luid, item.name, item.url_id
        self.projectName, self.projectLuid = item.project.name, item.project.luid
        self.hasExtracts = item.refreshable

    @property
    def upstreamTables(self) -> list[TableView]:
        tables = self.item.tables if self.item.kind == "datasource" else None
        found = tables if tables is not None else self.graph.workbook_tables(self.item)
        return [TableView(self.graph, t) for t in found]

    @property
    def downstreamWorkbooks(self) -> list[ItemView]:
        reads = [w for w in self.graph.content.of_kind("workbook") if self._feeds(w)]
        return [ItemView(self.graph, w) for w in reads]

    @property
    def embeddedDatasources(self) -> list[EmbeddedView]:
        return [EmbeddedView(self, e, n) for n, e in enumerate(self.item.embedded)]

    @property
    def upstreamDatasources(self) -> list[ItemView]:
        found = {e.published: self.graph.published_of(e) for e in self.item.embedded}
        return [ItemView(self.graph, s) for s in found.values() if s is not None]

    def _feeds(self, workbook: Item) -> bool:
        return any(self.graph.published_of(e) is self.item for e in workbook.embedded)


class EmbeddedView:
    def __init__(self, workbook: ItemView, embedded: Embedded, number: int) -> None:
        self.graph, self.embedded, self.workbook = workbook.graph, embedded, workbook
        self.id = metadata_id("embedded", f"{workbook.luid}/{number}")
        self.name, self.hasExtracts = embedded.name, embedded.has_extracts

    @property
    def upstreamTables(self) -> list[TableView]:
        return [TableView(self.graph, t) for t in self.graph.embedded_tables(self.embedded)]

    @property
    def upstreamDatasources(self) -> list[ItemView]:
        published = self.graph.published_of(self.embedded)
        return [ItemView(self.graph, published)] if published else []


View = TableView | ItemView


class Root:
    """The Query type's fields; `info.context` collects warnings for the answer."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def databaseTables(self, info: Any, **args: Any) -> list[View]:
        return filtered(self._tables(), args.get("filter"))

    def databaseTablesConnection(self, info: Any, **args: Any) -> dict[str, Any]:
        return connection("DatabaseTable", self._tables(), args, info.context)

    def publishedDatasources(self, info: Any, **args: Any) -> list[View]:
        return filtered(self._items("datasource"), args.get("filter"))

    def publishedDatasourcesConnection(self, info: Any, **args: Any) -> dict[str, Any]:
        return connection("PublishedDatasource", self._items("datasource"), args, info.context)

    def workbooks(self, info: Any, **args: Any) -> list[View]:
        return filtered(self._items("workbook"), args.get("filter"))

    def workbooksConnection(self, info: Any, **args: Any) -> dict[str, Any]:
        return connection("Workbook", self._items("workbook"), args, info.context)

    def _tables(self) -> list[View]:
        return [TableView(self.graph, t) for t in self.graph.content.catalog.tables.values()]

    def _items(self, kind: Any) -> list[View]:
        return [ItemView(self.graph, i) for i in self.graph.content.of_kind(kind)]


def filtered(views: Iterable[View], spec: Mapping[str, Any] | None) -> list[View]:
    """Views matching every key of a Tableau filter, ordered by id as Tableau orders them."""
    tests = [_test(key, value) for key, value in (spec or {}).items()]
    return sorted((v for v in views if all(t(v) for t in tests)), key=lambda v: v.id)


def _test(key: str, value: Any) -> Callable[[View], bool]:
    if key.endswith("Within"):
        wanted = set(value or [])
        return lambda v: getattr(v, key.removesuffix("Within"), None) in wanted
    return lambda v: getattr(v, key, None) == value


def connection(
    typename: str, views: list[View], args: Mapping[str, Any], warnings: list[GraphQLError]
) -> dict[str, Any]:
    chosen = filtered(views, args.get("filter"))
    start = _start(typename, chosen, args)
    first = _page_size(args.get("first"), warnings)
    page = chosen[start : start + first]
    return {
        "nodes": page,
        "totalCount": len(chosen),
        "pageInfo": {
            "hasNextPage": start + len(page) < len(chosen),
            "hasPreviousPage": start > 0,
            "startCursor": cursor(typename, page[0].id) if page else None,
            "endCursor": cursor(typename, page[-1].id) if page else None,
        },
    }


def cursor(typename: str, node_id: str) -> str:
    return base64.urlsafe_b64encode(f"{typename}:{node_id}".encode()).decode()


def _start(typename: str, chosen: list[View], args: Mapping[str, Any]) -> int:
    after, offset = args.get("after"), args.get("offset")
    if after is not None and offset is not None:
        raise error(
            "INVALID_ARGUMENT",
            'Can\'t use "after" and "offset" pagination at the same time. '
            "Remove one of the arguments from the query.",
        )
    if offset is not None:
        return max(0, int(offset))
    if after is None:
        return 0
    return bisect.bisect_right([v.id for v in chosen], _cursor_id(typename, after))


def _cursor_id(typename: str, after: str) -> str:
    try:
        kind, _, node_id = base64.urlsafe_b64decode(after.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        kind, node_id = "", ""
    if kind != typename or not node_id:
        raise error(
            "INVALID_ARGUMENT",
            "The query contains an invalid cursor. Make sure to use cursors of the same type.",
        )
    return node_id


def _page_size(first: int | None, warnings: list[GraphQLError]) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if first < 0:
        raise error("INVALID_ARGUMENT", f'"first" must not be negative, not {first}.')
    if first > MAX_PAGE_SIZE:
        warnings.append(
            error(
                "MAX_PAGE_SIZE_EXCEEDED",
                f'The value chosen for "first" exceeded the maximum page size, so the query '
                f"results will be limited to the maximum page size ({MAX_PAGE_SIZE}) instead "
                f'of the value chosen for "first".',
                severity="WARNING",
            )
        )
        return MAX_PAGE_SIZE
    return first
