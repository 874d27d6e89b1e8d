"""The relay's Metadata API client against the emulator, over real HTTP.

Paging through a large site, partial answers, rate limits, sessions, and the
lineage look-ups (`extract_items_reading`, `items_by_url_id`) built on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dbt_tableau_relay import tableau_metadata
from dbt_tableau_relay.config import TableauSettings
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.errors import (
    PartialMetadataError,
    PermanentTableauError,
    TransientTableauError,
)
from dbt_tableau_relay.lineage.model import TableauItem
from dbt_tableau_relay.lineage.tableau_graph import TABLES_QUERY
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.tableau_metadata import extract_items_reading, items_by_url_id

SITE = "marketing"
PAT_NAME = "relay-pat"
PAT_SECRET = "pat-secret-metadata"

ORDERS = "dw.marts.orders"
LINEAGE = {
    "tables": [
        {"database": "DW", "schema": "MARTS", "name": "ORDERS"},
        {"database": "DW", "schema": "STAGING", "name": "ORDERS"},
    ],
    "datasources": [
        {"path": "Ops/Orders Extract", "tables": ["DW.MARTS.ORDERS"]},
        {"path": "Ops/Orders Live", "refreshable": False, "tables": ["DW.MARTS.ORDERS"]},
        {"path": "Ops/Staging Extract", "tables": ["DW.STAGING.ORDERS"]},
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
BULK = 2500


class Clock:
    """Time that passes only when the client sleeps: backoff is recorded, never waited."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(site=SITE, pat_name=PAT_NAME, pat_secret=PAT_SECRET) as e:
        e.load_content(LINEAGE)
        yield e


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(emu: Emulator, clock: Clock) -> Iterator[TableauClient]:
    settings = TableauSettings.model_validate(
        {
            "server_url": emu.url,
            "site": SITE,
            "token_name": PAT_NAME,
            "token_secret": PAT_SECRET,
            "request_timeout": 5.0,
        }
    )
    with TableauClient(settings, clock=clock, sleep=clock.sleep) as c:
        yield c


def bulk(emu: Emulator, count: int = BULK) -> list[str]:
    emu.load_content(
        {
            "tables": [
                {"database": "DW", "schema": "BULK", "name": f"T{n:05d}"} for n in range(count)
            ]
        }
    )
    return [f"T{n:05d}" for n in range(count)]


def tables(
    client: TableauClient, clock: Clock, names: list[str], page_size: int
) -> list[dict[str, Any]]:
    variables = {"names": names}
    data = tableau_metadata.query(
        client, TABLES_QUERY, variables, page_size=page_size, sleep=clock.sleep
    )
    nodes: list[dict[str, Any]] = data["databaseTablesConnection"]["nodes"]
    return nodes


# -- paging ---------------------------------------------------------------------------


def test_pages_through_a_large_site_in_small_pages(
    emu: Emulator, client: TableauClient, clock: Clock
) -> None:
    names = bulk(emu)

    nodes = tables(client, clock, names, page_size=50)

    assert sorted(n["name"] for n in nodes) == names
    assert len(emu.metadata_queries()) == BULK // 50
    assert len(emu.sign_ins()) == 1


def test_metadata_pages_a_connection_query_whole(emu: Emulator, client: TableauClient) -> None:
    names = bulk(emu, 250)

    data = client.metadata(TABLES_QUERY, {"names": names})

    connection = data["databaseTablesConnection"]
    assert len(connection["nodes"]) == connection["totalCount"] == 250
    assert connection["pageInfo"]["hasNextPage"] is False
    assert len(emu.metadata_queries()) == 3  # Tableau's default page: 100


def test_a_query_without_first_and_after_is_one_call(emu: Emulator, client: TableauClient) -> None:
    data = client.metadata("{ workbooks { luid } }")

    assert len(data["workbooks"]) == 8  # the 5 demo workbooks and 3 of LINEAGE
    assert len(emu.metadata_queries()) == 1


def test_a_paged_query_must_ask_for_one_connection(client: TableauClient) -> None:
    query = """query($first: Int, $after: String) {
      workbooksConnection(first: $first, after: $after) { nodes { luid } } }"""

    with pytest.raises(PermanentTableauError, match=r"one \.\.\.Connection"):
        client.metadata(query, {"first": 1, "after": None})


# -- partial data ---------------------------------------------------------------------


def test_partial_pages_are_asked_again_smaller_and_the_answer_is_whole(
    emu: Emulator, client: TableauClient, clock: Clock
) -> None:
    names = bulk(emu, 300)
    emu.faults.metadata_partial(above_nodes=400)  # pages of 100 tables are cut, of 25 pass

    nodes = tables(client, clock, names, page_size=100)

    assert sorted(n["name"] for n in nodes) == names
    assert clock.sleeps == []  # a smaller page needs no pause


def test_partial_data_that_persists_is_a_transient_error_not_an_answer(
    emu: Emulator, client: TableauClient, clock: Clock
) -> None:
    emu.faults.metadata_partial()  # every answer, whatever its size

    with pytest.raises(PartialMetadataError, match=r"partial data.*not using it") as info:
        extract_items_reading(client, [ORDERS])

    assert isinstance(info.value, TransientTableauError)
    assert info.value.code == "TIME_LIMIT_EXCEEDED"
    assert len(clock.sleeps) == tableau_metadata.POLICY.max_attempts - 1
    assert len(emu.metadata_queries()) == 2 + tableau_metadata.POLICY.max_attempts  # 100, 25, 10...


def test_node_limit_on_a_non_paged_query_is_never_used_as_complete(
    emu: Emulator, client: TableauClient
) -> None:
    bulk(emu, 100)
    emu.metadata_node_limit = 50

    with pytest.raises(PartialMetadataError, match="NODE_LIMIT_EXCEEDED"):
        client.metadata("{ databaseTables { name database { name } } }")


# -- retries ----------------------------------------------------------------------------


def test_rate_exceeded_is_retried_with_backoff(
    emu: Emulator, client: TableauClient, clock: Clock
) -> None:
    emu.faults.metadata_error(count=2)

    found = extract_items_reading(client, [ORDERS])

    assert found
    assert len(clock.sleeps) == 2
    assert len(emu.metadata_queries()) == 3


def test_rate_exceeded_that_persists_gives_up_transient(
    emu: Emulator, client: TableauClient, clock: Clock
) -> None:
    emu.faults.metadata_error(count=100)

    with pytest.raises(TransientTableauError, match="rate exceeded") as info:
        client.metadata("{ workbooks { luid } }")

    assert info.value.code == "RATE_EXCEEDED"
    assert len(emu.metadata_queries()) == tableau_metadata.POLICY.max_attempts


def test_html_429_is_retried_not_sooner_than_retry_after(
    emu: Emulator, client: TableauClient, clock: Clock
) -> None:
    client.connect()
    emu.faults.rate_limit(count=1, retry_after=4)

    assert client.metadata("{ workbooks { luid } }")["workbooks"]
    assert clock.sleeps
    assert clock.sleeps[0] >= 4.0


def test_5xx_is_retried(emu: Emulator, client: TableauClient, clock: Clock) -> None:
    client.connect()
    emu.faults.fail(count=2, status=502)

    assert client.metadata("{ workbooks { luid } }")["workbooks"]
    assert len(clock.sleeps) == 2


def test_a_dead_session_signs_in_again_once(emu: Emulator, client: TableauClient) -> None:
    client.connect()
    emu.invalidate_sessions()

    assert client.metadata("{ workbooks { luid } }")["workbooks"]
    assert len(emu.sign_ins()) == 2


def test_a_refused_query_fails_at_once(emu: Emulator, client: TableauClient, clock: Clock) -> None:
    with pytest.raises(PermanentTableauError, match="colour"):
        client.metadata("{ workbooks { colour } }")

    assert clock.sleeps == []
    assert len(emu.metadata_queries()) == 1


def test_access_denied_is_permanent_with_its_code(emu: Emulator, client: TableauClient) -> None:
    emu.faults.metadata_error(code="ACCESS_DENIED", message="not for you")

    with pytest.raises(PermanentTableauError) as info:
        extract_items_reading(client, [ORDERS])

    assert info.value.code == "ACCESS_DENIED"


# -- lineage look-ups ---------------------------------------------------------------------


def item(emu: Emulator, kind: Any, path: str) -> TableauItem:
    project, name = path.rsplit("/", 1)
    return TableauItem(kind, emu.luid(kind, path), name, project)


def test_extract_items_reading_finds_what_holds_an_extract(
    emu: Emulator, client: TableauClient
) -> None:
    found = extract_items_reading(client, ["DW.MARTS.ORDERS"])

    assert found == [
        (item(emu, "datasource", "Ops/Orders Extract"), frozenset({ORDERS})),
        (item(emu, "workbook", "Ops/Own Extract"), frozenset({ORDERS})),
    ]


@pytest.mark.parametrize(
    "relation",
    ["dw.marts.orders", '"DW"."MARTS"."ORDERS"', "Dw.Marts.Orders"],
    ids=["dbt-lower-case", "quoted-upper", "mixed-case"],
)
def test_snowflake_upper_case_tables_are_found_from_any_spelling(
    emu: Emulator, client: TableauClient, relation: str
) -> None:
    found = extract_items_reading(client, [relation])

    assert {i.luid for i, _ in found} == {
        emu.luid("datasource", "Ops/Orders Extract"),
        emu.luid("workbook", "Ops/Own Extract"),
    }


def test_the_demo_site_lineage(client: TableauClient) -> None:
    found = extract_items_reading(
        client, ["analytics.marts.fct_orders", "inventory.public.stock_levels"]
    )

    assert [(i.kind, i.path) for i, _ in found] == [
        ("datasource", "Sales/Orders"),  # not Live Inventory: a live connection
        ("workbook", "Sales/Pipeline Health"),  # not Sales/Executive Overview: via Sales/Orders
    ]


def test_no_relations_cost_no_call(emu: Emulator, client: TableauClient) -> None:
    assert extract_items_reading(client, []) == []
    assert emu.metadata_queries() == []


def test_items_by_url_id(emu: Emulator, client: TableauClient) -> None:
    workbooks = items_by_url_id(client, "workbook", ["1", "5", "9999"])
    sources = items_by_url_id(client, "datasource", ["7"])

    assert workbooks == {
        "1": item(emu, "workbook", "Sales/Executive Overview"),
        "5": item(emu, "workbook", "Sales/Pipeline Health"),
    }
    assert sources == {"7": item(emu, "datasource", "Sales/Orders")}


def test_items_by_url_id_of_nothing_costs_no_call(emu: Emulator, client: TableauClient) -> None:
    assert items_by_url_id(client, "workbook", []) == {}
    assert emu.metadata_queries() == []
