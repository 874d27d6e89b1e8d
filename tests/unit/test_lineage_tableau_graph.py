"""What in a Metadata API answer holds an extract, and which dbt relations it reads."""

from __future__ import annotations

from typing import Any

import pytest

from dbt_tableau_relay.lineage.model import TableauItem
from dbt_tableau_relay.lineage.tableau_graph import (
    NAMES_PER_QUERY,
    TABLES_QUERY,
    extract_items,
    own_extract_tables,
    resolve_url_ids,
    table_names,
    table_relation,
    tables_queries,
    url_id_of,
    url_ids_query,
)

ORDERS = "analytics.marts.fct_orders"
DS_LUID = "d8f72abe-89ad-5408-8e58-5698db679e8f"
WB_LUID = "f79e8392-a105-586f-a029-b19da8945140"


def table(
    name: str = "FCT_ORDERS", schema: str = "MARTS", database: str = "ANALYTICS", **links: Any
) -> dict[str, Any]:
    node: dict[str, Any] = {"name": name, "schema": schema, "database": {"name": database}}
    node["downstreamDatasources"] = links.get("datasources", [])
    node["downstreamWorkbooks"] = links.get("workbooks", [])
    return node


def published(has_extracts: bool, luid: str = DS_LUID, name: str = "Orders") -> dict[str, Any]:
    return {
        "luid": luid,
        "name": name,
        "projectName": "Sales",
        "vizportalUrlId": "7",
        "hasExtracts": has_extracts,
    }


def embedded(has_extracts: bool, *tables: dict[str, Any], on: str | None = None) -> dict[str, Any]:
    upstream = [{"luid": on}] if on else []
    return {
        "name": "ds",
        "hasExtracts": has_extracts,
        "upstreamTables": list(tables),
        "upstreamDatasources": upstream,
    }


def workbook(*embedded_sources: dict[str, Any], luid: str = WB_LUID) -> dict[str, Any]:
    return {
        "luid": luid,
        "name": "Executive Overview",
        "projectName": "Sales",
        "vizportalUrlId": "1",
        "embeddedDatasources": list(embedded_sources),
    }


def ref(
    name: str = "FCT_ORDERS", schema: str = "MARTS", database: str = "ANALYTICS"
) -> dict[str, Any]:
    return {"name": name, "schema": schema, "database": {"name": database}}


SOURCE = TableauItem("datasource", DS_LUID, "Orders", "Sales")
BOOK = TableauItem("workbook", WB_LUID, "Executive Overview", "Sales")


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        pytest.param(
            table(datasources=[published(True)]), [(SOURCE, {ORDERS})], id="published-extract"
        ),
        pytest.param(table(datasources=[published(False)]), [], id="published-live"),
        pytest.param(
            table(workbooks=[workbook(embedded(True, ref()))]),
            [(BOOK, {ORDERS})],
            id="embedded-extract-refreshed",
        ),
        pytest.param(table(workbooks=[workbook(embedded(False, ref()))]), [], id="embedded-live"),
        pytest.param(
            table(
                datasources=[published(True)],
                workbooks=[workbook(embedded(False, ref(), on=DS_LUID))],
            ),
            [(SOURCE, {ORDERS})],
            id="workbook-via-published-not-refreshed",
        ),
        pytest.param(
            # Even if Tableau said the embedded one has an extract, it is the published one's.
            table(workbooks=[workbook(embedded(True, ref(), on=DS_LUID))]),
            [],
            id="embedded-on-published-never-the-workbooks",
        ),
        pytest.param(
            table(
                workbooks=[
                    workbook(embedded(False, ref(), on=DS_LUID), embedded(True, ref("TARGETS")))
                ]
            ),
            [],
            id="own-extract-of-another-table",
        ),
        pytest.param(
            table(workbooks=[workbook(embedded(False, ref(), on=DS_LUID), embedded(True, ref()))]),
            [(BOOK, {ORDERS})],
            id="own-extract-beside-published",
        ),
        pytest.param(
            table(schema="STAGING", datasources=[published(True)]), [], id="same-name-other-schema"
        ),
        pytest.param(
            table(database="RAW", datasources=[published(True)]), [], id="same-name-other-database"
        ),
    ],
)
def test_what_holds_an_extract_that_reads_the_table(
    node: dict[str, Any], expected: list[tuple[TableauItem, set[str]]]
) -> None:
    found = extract_items([node], [ORDERS])

    assert found == [(item, frozenset(reads)) for item, reads in expected]


@pytest.mark.parametrize(
    ("relation", "database", "schema", "name"),
    [
        pytest.param(
            "analytics.marts.fct_orders", "ANALYTICS", "MARTS", "FCT_ORDERS", id="snowflake-upper"
        ),
        pytest.param(
            '"ANALYTICS"."MARTS"."FCT_ORDERS"', "ANALYTICS", "MARTS", "FCT_ORDERS", id="quoted"
        ),
        pytest.param(
            '"Analytics"."Marts"."FctOrders"', "analytics", "marts", "fctorders", id="mixed-case"
        ),
        pytest.param(
            "`proj`.`dataset`.`orders`", "proj", "dataset", "orders", id="bigquery-backticks"
        ),
        pytest.param("[dw].[dbo].[Orders]", "DW", "dbo", "orders", id="sqlserver-brackets"),
        pytest.param(" Analytics . Marts . Orders ", "analytics", "marts", "ORDERS", id="spaces"),
    ],
)
def test_relations_match_case_and_quote_insensitively(
    relation: str, database: str, schema: str, name: str
) -> None:
    node = table(name, schema, database, datasources=[published(True)])

    [(item, reads)] = extract_items([node], [relation])

    assert item == SOURCE
    assert reads == {f"{database}.{schema}.{name}".lower()}


def test_an_item_reached_through_several_tables_comes_once_with_all_of_them() -> None:
    both = [ref(), ref("DIM_CUSTOMERS")]
    book = workbook(embedded(True, *both))
    nodes = [table(workbooks=[book]), table("DIM_CUSTOMERS", workbooks=[book])]

    found = extract_items(nodes, [ORDERS, "analytics.marts.dim_customers", "analytics.marts.other"])

    assert found == [(BOOK, frozenset({ORDERS, "analytics.marts.dim_customers"}))]


def test_a_workbook_comes_only_with_the_asked_relations_it_reads() -> None:
    book = workbook(embedded(True, ref(), ref("NOT_IN_THE_RUN")))

    [(_, reads)] = extract_items([table(workbooks=[book])], [ORDERS])

    assert reads == {ORDERS}


def test_items_come_sorted_by_kind_then_path() -> None:
    sources = [published(True, luid="b", name="Zeta"), published(True, luid="a", name="Alpha")]
    node = table(datasources=sources, workbooks=[workbook(embedded(True, ref()))])

    found = extract_items([node], [ORDERS])

    assert [item.path for item, _ in found] == [
        "Sales/Alpha",
        "Sales/Zeta",
        "Sales/Executive Overview",
    ]


@pytest.mark.parametrize(
    "node",
    [
        pytest.param({"name": "FCT_ORDERS", "schema": "MARTS", "database": None}, id="no-database"),
        pytest.param(
            table(datasources=None, workbooks=None) | {"downstreamDatasources": None},
            id="null-lists",
        ),
        pytest.param(table(datasources=[None, {"hasExtracts": True}]), id="null-or-luidless-items"),
        pytest.param(
            table(workbooks=[workbook(None, {"hasExtracts": True, "upstreamTables": None})]),
            id="null-embedded",
        ),
    ],
)
def test_nulls_in_an_answer_are_no_items_and_no_crash(node: dict[str, Any]) -> None:
    assert extract_items([node], [ORDERS]) == []


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (ref(), ORDERS),
        (ref(database="Analytics"), ORDERS),
        ({"name": "FCT_ORDERS", "schema": "MARTS", "database": {"name": None}}, None),
        ({"name": "FCT_ORDERS", "schema": " ", "database": {"name": "A"}}, None),
        ({"schema": "MARTS", "database": {"name": "A"}}, None),
    ],
)
def test_table_relation(node: dict[str, Any], expected: str | None) -> None:
    assert table_relation(node) == expected


def test_own_extract_tables_leaves_out_tables_read_through_published_sources() -> None:
    book = workbook(embedded(False, ref(), on=DS_LUID), embedded(True, ref("PIPELINE")))

    assert own_extract_tables(book) == {"analytics.marts.pipeline"}


@pytest.mark.parametrize(
    ("relations", "names"),
    [
        (["analytics.marts.fct_orders"], ["fct_orders", "FCT_ORDERS"]),
        (['"DB"."S"."Orders"'], ["Orders", "ORDERS", "orders"]),
        (["db.s.ORDERS", "other.s.orders"], ["ORDERS", "orders"]),
        (["orders"], ["orders", "ORDERS"]),
        (["", "db.s."], []),
    ],
)
def test_table_names_asks_for_each_identifier_as_spelled_upper_and_lower(
    relations: list[str], names: list[str]
) -> None:
    assert table_names(relations) == names


def test_tables_queries_split_long_name_lists() -> None:
    relations = [f"db.s.table_{n}" for n in range(NAMES_PER_QUERY)]  # two spellings each

    queries = list(tables_queries(relations))

    assert [len(v["names"]) for _, v in queries] == [NAMES_PER_QUERY, NAMES_PER_QUERY]
    assert all(text == TABLES_QUERY for text, _ in queries)


def test_no_relations_no_query() -> None:
    assert list(tables_queries([])) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://10ax.online.tableau.com/#/site/sales/workbooks/12/views", ("workbook", "12")),
        ("https://tableau.example.com/#/site/sales/workbooks/12", ("workbook", "12")),
        ("https://tableau.example.com/#/workbooks/3", ("workbook", "3")),
        ("https://tableau.example.com/#/site/s/datasources/45/askData", ("datasource", "45")),
        ("https://tableau.example.com/#/site/s/datasources/45?tab=1", ("datasource", "45")),
        ("https://tableau.example.com/#/site/s/views/Sales/Overview", None),
        ("https://tableau.example.com/#/site/s/workbooks/12abc", None),
        ("not a url", None),
    ],
)
def test_url_id_of(url: str, expected: tuple[str, str] | None) -> None:
    assert url_id_of(url) == expected


@pytest.mark.parametrize(
    ("kind", "root"),
    [("workbook", "workbooksConnection"), ("datasource", "publishedDatasourcesConnection")],
)
def test_url_ids_query_filters_on_vizportal_url_id(kind: Any, root: str) -> None:
    text, variables = url_ids_query(kind, ["12", 3, "12"])

    assert f"{root}(filter: {{vizportalUrlIdWithin: $ids}}" in text
    assert variables == {"ids": ["12", "3"]}


def test_resolve_url_ids() -> None:
    nodes = [
        {"luid": "AB-CD", "name": "Pipeline", "projectName": "Sales", "vizportalUrlId": "5"},
        {"luid": "ef", "name": "Loose", "projectName": None, "vizportalUrlId": "6"},
        {"luid": None, "name": "Hidden", "vizportalUrlId": "7"},
    ]

    assert resolve_url_ids("workbook", nodes) == {
        "5": TableauItem("workbook", "ab-cd", "Pipeline", "Sales"),
        "6": TableauItem("workbook", "ef", "Loose", None),
    }
