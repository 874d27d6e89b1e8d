"""The emulator's Metadata API (GraphQL) over real HTTP, as TSC's `server.metadata` sees it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import tableauserverclient as TSC
from tableauserverclient.server.endpoint.exceptions import FailedSignInError, ServerResponseError

from dbt_tableau_relay.emulators.tableau import Emulator

TABLES_PAGE = """
query($names: [String], $first: Int, $after: String) {
  databaseTablesConnection(filter: {nameWithin: $names}, first: $first, after: $after) {
    nodes { name schema fullName database { name connectionType } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}
"""

DOWNSTREAM = """
query($names: [String]) {
  databaseTables(filter: {nameWithin: $names}) {
    name
    downstreamDatasources { name hasExtracts vizportalUrlId }
    downstreamWorkbooks {
      name
      embeddedDatasources { name hasExtracts upstreamTables { name } upstreamDatasources { name } }
    }
  }
}
"""

LINEAGE = {
    "tables": [{"database": "DW", "schema": "MARTS", "name": "ORDERS"}],
    "datasources": [
        {"path": "Ops/Orders Extract", "tables": ["DW.MARTS.ORDERS"]},
        {"path": "Ops/Orders Live", "refreshable": False, "tables": ["DW.MARTS.ORDERS"]},
    ],
    "workbooks": [
        {
            "path": "Ops/Own Extract",
            "embedded_datasources": [
                {"name": "Orders", "has_extracts": True, "tables": ["DW.MARTS.ORDERS"]}
            ],
        },
        {
            "path": "Ops/On Published",
            "embedded_datasources": [{"name": "Orders", "published": "Ops/Orders Extract"}],
        },
        {
            "path": "Ops/Live",
            "embedded_datasources": [{"name": "Orders", "tables": ["DW.MARTS.ORDERS"]}],
        },
    ],
}


def gql(server: TSC.Server, query: str, **variables: Any) -> dict[str, Any]:
    answer: dict[str, Any] = server.metadata.query(query, variables or None)
    return answer


def post(emulator: Emulator, body: Any, token: str | None, **headers: str) -> requests.Response:
    if token is not None:
        headers["X-Tableau-Auth"] = token
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{emulator.url}/api/metadata/graphql", data=data, headers=headers, timeout=5
    )


def codes(answer: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in answer.get("errors", [])]


def bulk_tables(emulator: Emulator, count: int) -> None:
    emulator.load_content(
        {
            "tables": [
                {"database": "DW", "schema": "BULK", "name": f"T{n:04d}"} for n in range(count)
            ]
        }
    )


# -- authentication -----------------------------------------------------------------


def test_without_a_token_the_answer_is_401000(emulator: Emulator) -> None:
    resp = post(emulator, {"query": "{ workbooks { luid } }"}, None)

    assert resp.status_code == 401
    assert 'code="401000"' in resp.text


def test_a_dead_token_is_401002_which_tsc_raises(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    emulator.invalidate_sessions()

    with pytest.raises(FailedSignInError) as info:
        gql(tsc_server, "{ workbooks { luid } }")

    assert info.value.code == "401002"


def test_a_signed_in_query_answers_data(emulator: Emulator, tsc_server: TSC.Server) -> None:
    answer = gql(
        tsc_server, '{ workbooks(filter: {name: "Pipeline Health"}) { luid projectName } }'
    )

    assert answer == {
        "data": {
            "workbooks": [
                {"luid": emulator.luid("workbook", "Sales/Pipeline Health"), "projectName": "Sales"}
            ]
        }
    }


def test_the_request_log_records_metadata_queries_without_the_token(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    gql(tsc_server, "{ workbooks { luid } }")

    [logged] = emulator.metadata_queries()
    assert (logged.status, logged.had_token) == (200, True)
    assert tsc_server.auth_token not in json.dumps([r.to_json() for r in emulator.requests])


# -- the GraphQL request and answer ---------------------------------------------------


def test_get_is_405(emulator: Emulator, tsc_server: TSC.Server) -> None:
    resp = requests.get(
        f"{emulator.url}/api/metadata/graphql",
        headers={"X-Tableau-Auth": tsc_server.auth_token},
        timeout=5,
    )

    assert resp.status_code == 405


@pytest.mark.parametrize(
    "body",
    [b"{not json", {"variables": {}}, {"query": "{ workbooks { luid } }", "variables": [1]}],
    ids=["not-json", "no-query", "variables-not-an-object"],
)
def test_a_malformed_body_is_400(emulator: Emulator, tsc_server: TSC.Server, body: Any) -> None:
    resp = post(emulator, body, tsc_server.auth_token)

    assert resp.status_code == 400
    assert resp.json()["errors"][0]["message"]


def test_an_invalid_query_answers_errors_and_no_data(tsc_server: TSC.Server) -> None:
    answer = gql(tsc_server, "{ workbooks { colour } }")

    assert answer["data"] is None
    assert "colour" in answer["errors"][0]["message"]


def test_operation_name_picks_the_operation(tsc_server: TSC.Server, emulator: Emulator) -> None:
    body = {
        "query": "query a { workbooks { luid } } query b { publishedDatasources { luid } }",
        "operationName": "b",
    }
    resp = post(emulator, body, tsc_server.auth_token)

    assert list(resp.json()["data"]) == ["publishedDatasources"]


# -- filters --------------------------------------------------------------------------


def test_name_within_matches_exactly_as_tableau_does(tsc_server: TSC.Server) -> None:
    upper = gql(tsc_server, DOWNSTREAM, names=["FCT_ORDERS"])["data"]["databaseTables"]
    lower = gql(tsc_server, DOWNSTREAM, names=["fct_orders"])["data"]["databaseTables"]

    assert [t["name"] for t in upper] == ["FCT_ORDERS"]
    assert lower == []


@pytest.mark.parametrize(
    ("filter_", "names"),
    [
        ('{schema: "MARTS", nameWithin: ["FCT_ORDERS", "stock_levels"]}', ["FCT_ORDERS"]),
        ('{connectionType: "postgres"}', ["stock_levels"]),
        ('{fullName: "[dbo].[GL_ENTRIES]"}', ["GL_ENTRIES"]),
        ('{schemaWithin: ["public", "dbo"]}', ["GL_ENTRIES", "stock_levels"]),
    ],
)
def test_table_filters(tsc_server: TSC.Server, filter_: str, names: list[str]) -> None:
    answer = gql(tsc_server, f"{{ databaseTables(filter: {filter_}) {{ name }} }}")

    assert sorted(t["name"] for t in answer["data"]["databaseTables"]) == names


@pytest.mark.parametrize("root", ["workbooks", "publishedDatasources"])
def test_vizportal_url_id_matches_the_rest_webpage_url(
    emulator: Emulator, tsc_server: TSC.Server, root: str
) -> None:
    endpoint = tsc_server.workbooks if root == "workbooks" else tsc_server.datasources
    rest = {item.id: item.webpage_url for item in TSC.Pager(endpoint)}

    nodes = gql(tsc_server, f"{{ {root} {{ luid vizportalUrlId }} }}")["data"][root]

    assert len(nodes) == len(rest)
    for node in nodes:
        assert rest[node["luid"]].endswith(f"/{node['vizportalUrlId']}")


def test_filter_by_vizportal_url_id_within(emulator: Emulator, tsc_server: TSC.Server) -> None:
    query = '{ workbooks(filter: {vizportalUrlIdWithin: ["3", "999"]}) { luid vizportalUrlId } }'

    answer = gql(tsc_server, query)

    luid = emulator.luid("workbook", "Finance/Regional/EMEA Revenue")
    assert answer["data"]["workbooks"] == [{"luid": luid, "vizportalUrlId": "3"}]


def test_a_republished_item_gets_a_new_url_id_never_a_reused_one(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    luid = emulator.republish("workbook", "Sales/Executive Overview")

    ids = [
        w["vizportalUrlId"]
        for w in gql(tsc_server, "{ workbooks { vizportalUrlId } }")["data"]["workbooks"]
    ]
    mine = gql(tsc_server, f'{{ workbooks(filter: {{luid: "{luid}"}}) {{ vizportalUrlId }} }}')

    assert len(set(ids)) == len(ids)
    assert int(mine["data"]["workbooks"][0]["vizportalUrlId"]) > 9  # after the 9 demo items


# -- lineage ----------------------------------------------------------------------------


def test_downstream_of_a_table_as_tableau_links_it(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    emulator.load_content(LINEAGE)

    [orders] = gql(tsc_server, DOWNSTREAM, names=["ORDERS"])["data"]["databaseTables"]

    sources = {s["name"]: s["hasExtracts"] for s in orders["downstreamDatasources"]}
    assert sources == {"Orders Extract": True, "Orders Live": False}
    books = {w["name"]: w["embeddedDatasources"][0] for w in orders["downstreamWorkbooks"]}
    assert set(books) == {"Own Extract", "On Published", "Live"}  # transitive, as on Tableau
    assert books["Own Extract"]["hasExtracts"] is True
    assert books["Live"]["hasExtracts"] is False
    assert books["On Published"] == {
        "name": "Orders",
        "hasExtracts": False,
        "upstreamTables": [{"name": "ORDERS"}],
        "upstreamDatasources": [{"name": "Orders Extract"}],
    }


def test_workbook_and_source_upstream_fields(emulator: Emulator, tsc_server: TSC.Server) -> None:
    emulator.load_content(LINEAGE)
    query = """{
      workbooks(filter: {projectName: "Ops"}) {
        name upstreamTables { name } upstreamDatasources { name }
      }
      publishedDatasources(filter: {projectName: "Ops"}) {
        name upstreamTables { name } downstreamWorkbooks { name }
      }
    }"""

    data = gql(tsc_server, query)["data"]

    books = {w["name"]: w for w in data["workbooks"]}
    assert books["On Published"]["upstreamDatasources"] == [{"name": "Orders Extract"}]
    assert books["Own Extract"]["upstreamTables"] == [{"name": "ORDERS"}]
    sources = {s["name"]: s for s in data["publishedDatasources"]}
    assert sources["Orders Extract"]["downstreamWorkbooks"] == [{"name": "On Published"}]
    assert sources["Orders Live"]["upstreamTables"] == [{"name": "ORDERS"}]


@pytest.mark.parametrize(
    ("path", "refreshable"),
    [("Ops/Own Extract", True), ("Ops/On Published", False), ("Ops/Live", False)],
)
def test_a_workbook_without_an_extract_of_its_own_answers_409090(
    emulator: Emulator, tsc_server: TSC.Server, path: str, refreshable: bool
) -> None:
    emulator.load_content(LINEAGE)
    luid = emulator.luid("workbook", path)

    if refreshable:
        assert tsc_server.workbooks.refresh(luid).id
    else:
        with pytest.raises(ServerResponseError) as info:
            tsc_server.workbooks.refresh(luid)
        assert info.value.code == "409090"


def test_python_api_builds_the_same_lineage(emulator: Emulator, tsc_server: TSC.Server) -> None:
    emulator.add_table("DW.MARTS.ORDERS", connection_type="redshift")
    emulator.add_datasource("Ops/Orders", tables=["DW.MARTS.ORDERS"])
    emulator.add_workbook(
        "Ops/Board", embedded_datasources=[{"name": "o", "published": "Ops/Orders"}]
    )
    emulator.add_workbook(
        "Ops/Live", embedded_datasources=[{"name": "o", "tables": ["DW.MARTS.ORDERS"]}]
    )

    [orders] = gql(tsc_server, DOWNSTREAM, names=["ORDERS"])["data"]["databaseTables"]

    assert [s["name"] for s in orders["downstreamDatasources"]] == ["Orders"]
    assert sorted(w["name"] for w in orders["downstreamWorkbooks"]) == ["Board", "Live"]
    with pytest.raises(ServerResponseError):
        tsc_server.workbooks.refresh(emulator.luid("workbook", "Ops/Board"))


# -- paging -----------------------------------------------------------------------------


def test_paging_with_cursors_walks_every_table_once(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    bulk_tables(emulator, 250)
    names = [f"T{n:04d}" for n in range(250)]
    seen: list[str] = []
    after = None
    while True:
        page = gql(tsc_server, TABLES_PAGE, names=names, first=40, after=after)["data"]
        connection = page["databaseTablesConnection"]
        assert connection["totalCount"] == 250
        seen.extend(n["name"] for n in connection["nodes"])
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]

    assert sorted(seen) == names
    assert len(emulator.metadata_queries()) == 7  # 40 a page


def test_first_defaults_to_100(emulator: Emulator, tsc_server: TSC.Server) -> None:
    bulk_tables(emulator, 150)

    connection = gql(
        tsc_server, "{ databaseTablesConnection { nodes { id } pageInfo { hasNextPage } } }"
    )

    assert len(connection["data"]["databaseTablesConnection"]["nodes"]) == 100


def test_offset_pages_too(emulator: Emulator, tsc_server: TSC.Server) -> None:
    bulk_tables(emulator, 30)
    query = "{ databaseTablesConnection(first: 100, offset: 25) { nodes { id } totalCount } }"

    connection = gql(tsc_server, query)["data"]["databaseTablesConnection"]

    assert (len(connection["nodes"]), connection["totalCount"]) == (14, 39)  # 30 and the demo's 9


def test_first_over_the_maximum_is_cut_with_a_warning(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    bulk_tables(emulator, 1100)
    answer = gql(tsc_server, "{ databaseTablesConnection(first: 5000) { nodes { id } } }")

    assert len(answer["data"]["databaseTablesConnection"]["nodes"]) == 1000
    assert codes(answer) == ["MAX_PAGE_SIZE_EXCEEDED"]
    assert answer["errors"][0]["extensions"]["severity"] == "WARNING"


@pytest.mark.parametrize(
    "arguments",
    [
        'after: "bm90IGEgY3Vyc29y"',  # base64 of "not a cursor"
        'after: "%%%"',
        "after: $workbook, offset: 1",
    ],
)
def test_bad_paging_arguments_are_invalid_argument(tsc_server: TSC.Server, arguments: str) -> None:
    workbooks = gql(tsc_server, "{ workbooksConnection(first: 1) { pageInfo { endCursor } } }")
    cursor = workbooks["data"]["workbooksConnection"]["pageInfo"]["endCursor"]
    declared = "($workbook: String)" if "$workbook" in arguments else ""
    query = f"query{declared} {{ databaseTablesConnection({arguments}) {{ totalCount }} }}"

    answer = gql(tsc_server, query, workbook=cursor)

    assert answer["data"] is None
    assert codes(answer) == ["INVALID_ARGUMENT"]


# -- faults -----------------------------------------------------------------------------


def test_a_non_paged_query_over_the_node_limit_is_cut_with_a_warning(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    bulk_tables(emulator, 100)
    emulator.metadata_node_limit = 50

    answer = gql(tsc_server, "{ databaseTables { name database { name } } }")

    assert codes(answer) == ["NODE_LIMIT_EXCEEDED"]
    assert answer["errors"][0]["extensions"]["severity"] == "WARNING"
    assert 0 < len(answer["data"]["databaseTables"]) <= 25  # two objects a table


def test_a_page_under_the_node_limit_is_whole(emulator: Emulator, tsc_server: TSC.Server) -> None:
    bulk_tables(emulator, 100)
    emulator.metadata_node_limit = 50

    answer = gql(tsc_server, TABLES_PAGE, names=["T0001", "T0002"], first=10, after=None)

    assert "errors" not in answer
    assert len(answer["data"]["databaseTablesConnection"]["nodes"]) == 2


def test_rate_exceeded_answers_an_error_and_no_data(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    emulator.faults.metadata_error(count=1)

    first = gql(tsc_server, "{ workbooks { luid } }")
    second = gql(tsc_server, "{ workbooks { luid } }")

    assert first["data"] is None
    assert codes(first) == ["RATE_EXCEEDED"]
    assert "errors" not in second


def test_time_limit_cuts_the_data_and_keeps_it(emulator: Emulator, tsc_server: TSC.Server) -> None:
    emulator.faults.metadata_partial(count=1)

    partial = gql(tsc_server, "{ workbooks { luid } }")
    whole = gql(tsc_server, "{ workbooks { luid } }")

    assert codes(partial) == ["TIME_LIMIT_EXCEEDED"]
    assert "time limit" in partial["errors"][0]["message"]
    assert len(partial["data"]["workbooks"]) == 2  # half of 5
    assert len(whole["data"]["workbooks"]) == 5


def test_time_limit_above_a_size_lets_small_pages_through(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    bulk_tables(emulator, 100)
    emulator.faults.metadata_partial(above_nodes=60)  # two objects a table, two a page
    names = [f"T{n:04d}" for n in range(100)]

    big = gql(tsc_server, TABLES_PAGE, names=names, first=40, after=None)
    small = gql(tsc_server, TABLES_PAGE, names=names, first=20, after=None)

    assert codes(big) == ["TIME_LIMIT_EXCEEDED"]
    assert len(big["data"]["databaseTablesConnection"]["nodes"]) == 20
    assert "errors" not in small


def test_http_faults_apply_to_the_metadata_api(emulator: Emulator, tsc_server: TSC.Server) -> None:
    emulator.faults.fail(count=1, status=503)
    emulator.faults.rate_limit(count=1, retry_after=3)

    limited = post(emulator, {"query": "{ workbooks { luid } }"}, tsc_server.auth_token)
    failed = post(emulator, {"query": "{ workbooks { luid } }"}, tsc_server.auth_token)

    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert failed.status_code == 503


def test_control_endpoints_set_metadata_faults_and_the_node_limit(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    faults = requests.post(
        f"{emulator.url}/_emulator/faults",
        json={"metadata_error": {"code": "ACCESS_DENIED", "message": "no"}},
        timeout=5,
    )
    settings = requests.post(
        f"{emulator.url}/_emulator/settings", json={"metadata_node_limit": 7}, timeout=5
    )

    assert faults.json()["metadata_error"] == {
        "count": 1,
        "code": "ACCESS_DENIED",
        "above_nodes": 0,
    }
    assert settings.json()["metadata_node_limit"] == 7 == emulator.metadata_node_limit
    assert codes(gql(tsc_server, "{ workbooks { luid } }")) == ["ACCESS_DENIED"]


# -- content format ----------------------------------------------------------------------


def test_a_state_file_with_lineage_is_served(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(LINEAGE))

    with Emulator(content=path) as emu:
        state = emu.content_state()

    assert state["tables"][0] | {"luid": None} == {
        "database": "DW",
        "schema": "MARTS",
        "name": "ORDERS",
        "connection_type": "snowflake",
        "luid": None,
    }
    books = {w["name"]: w for w in state["workbooks"]}
    assert books["On Published"]["embedded_datasources"] == [
        {"name": "Orders", "published": "Ops/Orders Extract"}
    ]
    assert "refreshable" not in books["Own Extract"]  # derived: it has an extract
    assert books["Live"]["refreshable"] is False


def test_content_state_round_trips(emulator: Emulator) -> None:
    emulator.load_content(LINEAGE)
    state = emulator.content_state()

    assert Emulator(content=state).content_state() == state


def test_content_posted_to_the_control_endpoint_is_merged(
    emulator: Emulator, tsc_server: TSC.Server
) -> None:
    resp = requests.post(f"{emulator.url}/_emulator/content", json=LINEAGE, timeout=5)

    assert resp.status_code == 200
    assert "Ops/Own Extract" in resp.json()["workbooks"]
    [orders] = gql(tsc_server, DOWNSTREAM, names=["ORDERS"])["data"]["databaseTables"]
    assert len(orders["downstreamWorkbooks"]) == 3


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"tables": [{"database": "D", "schema": "S"}]}, "missing name"),
        ({"tables": [{"database": "D", "schema": "S", "name": "T", "rows": 1}]}, "rows"),
        ({"datasources": [{"path": "A/B", "tables": ["ONLY.TWO"]}]}, "DATABASE.SCHEMA.NAME"),
        ({"datasources": [{"path": "A/B", "tables": "D.S.T"}]}, "list"),
        ({"datasources": [{"path": "A/B", "embedded_datasources": []}]}, "embedded_datasources"),
        ({"workbooks": [{"path": "A/B", "tables": ["D.S.T"]}]}, "tables"),
        (
            {
                "workbooks": [
                    {"path": "A/B", "embedded_datasources": [{"name": "e", "published": "A/Nope"}]}
                ]
            },
            "no published data source",
        ),
        (
            {
                "datasources": [{"path": "A/P"}],
                "workbooks": [
                    {
                        "path": "A/B",
                        "embedded_datasources": [
                            {"name": "e", "published": "A/P", "has_extracts": True}
                        ],
                    }
                ],
            },
            "no tables or extract of its own",
        ),
        (
            {"workbooks": [{"path": "A/B", "embedded_datasources": [{"tables": []}]}]},
            "name is required",
        ),
        ({"workbooks": [{"path": "A/B", "vizportal_url_id": 0}]}, "vizportal_url_id"),
        (
            {
                "workbooks": [
                    {"path": "A/B", "vizportal_url_id": 1},
                    {"path": "A/C", "vizportal_url_id": 1},
                ]
            },
            "taken",
        ),
    ],
)
def test_malformed_lineage_content_is_refused(state: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Emulator(content=state)


def test_tables_named_by_items_are_created(tsc_server: TSC.Server, emulator: Emulator) -> None:
    emulator.load_content({"datasources": [{"path": "A/B", "tables": ["NEW.S.T"]}]})

    answer = gql(tsc_server, '{ databaseTables(filter: {name: "T"}) { database { name } schema } }')

    assert answer["data"]["databaseTables"] == [{"database": {"name": "NEW"}, "schema": "S"}]


def test_explicit_url_ids_are_kept(emulator: Emulator, tsc_server: TSC.Server) -> None:
    emulator.load_content({"workbooks": [{"path": "A/B", "vizportal_url_id": 4242}]})
    after = emulator.add_workbook("A/C")

    answer = gql(tsc_server, '{ workbooks(filter: {projectName: "A"}) { luid vizportalUrlId } }')

    assert {w["luid"]: w["vizportalUrlId"] for w in answer["data"]["workbooks"]} == {
        emulator.luid("workbook", "A/B"): "4242",
        after: "4243",
    }
