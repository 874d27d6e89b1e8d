"""The decision rule, on the real green and failing runs and on statuses made up around them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbt_tableau_relay.lineage.artifacts import (
    Manifest,
    RunResults,
    load_manifest,
    load_run_results,
)
from dbt_tableau_relay.lineage.decide import (
    ERRORED,
    NOT_RUN,
    decide,
    decide_exposures,
    nodes_for_relations,
    relation_index,
    touched_relations,
    upstream_nodes,
)
from dbt_tableau_relay.lineage.exposures import ByLuid, ByUrlId, TableauRef, tableau_exposures
from dbt_tableau_relay.lineage.model import Decision, TableauItem
from dbt_tableau_relay.lineage.steps import BuildResult, build_of, combine

ARTIFACTS = Path(__file__).parents[1] / "fixtures" / "dbt-artifacts"
P = "relay_shop"
PIPELINE = TableauItem(
    "workbook", "3f1c9a52-7d2e-4b8a-9c61-0e5d4b7a2f10", "Pipeline Health", "Sales"
)
CUSTOMERS = TableauItem("datasource", "8b0e4d1c-25a7-4f3e-b6d9-71c2a0e95b44", "Customer 360", "CS")
FINANCE_URL = "https://tableau.example.com/#/site/marketing/workbooks/1234/views"
FINANCE = TableauItem("workbook", "0c9d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f", "Revenue", "Finance")


@cache
def manifest(name: str = "green") -> Manifest:
    return load_manifest(ARTIFACTS / name / "manifest.json")


@cache
def results(name: str) -> RunResults:
    return load_run_results(ARTIFACTS / name / "run_results.json")


def m(name: str) -> str:
    return f"model.{P}.{name}"


def build(**statuses: str) -> BuildResult:
    return BuildResult(statuses={m(k) if "." not in k else k: v for k, v in statuses.items()})


def exposure_decisions(run: str, *steps: str) -> dict[str, Decision]:
    """What the exposures rule decides for a job whose step artifacts are `steps`."""
    man = manifest(run)
    targets = tableau_exposures(man)
    items: dict[TableauRef, TableauItem] = {
        ByLuid("workbook", PIPELINE.luid): PIPELINE,
        ByLuid("datasource", CUSTOMERS.luid): CUSTOMERS,
        ByUrlId("workbook", "marketing", 1234, FINANCE_URL): FINANCE,
    }
    b = build_of([(i, results(s)) for i, s in enumerate(steps, start=4)])
    return {d.item.name: d for d in decide_exposures(targets, items, man, b)}


def statuses(decision: Decision) -> dict[str, str]:
    return {n.name: n.status for n in decision.nodes}


def test_green_run_refreshes_all_three() -> None:
    decisions = exposure_decisions("green", "green")
    assert {name: d.action for name, d in decisions.items()} == {
        "Pipeline Health": "refresh",
        "Customer 360": "refresh",
        "Revenue": "refresh",
    }
    assert decisions["Customer 360"].reason == "customers, orders rebuilt"


def test_failing_run_skips_the_exposure_behind_the_erroring_model() -> None:
    d = exposure_decisions("failing", "failing", "docs")["Pipeline Health"]
    assert d.action == "skip"
    assert d.nodes[0].name == "revenue_daily"
    assert d.nodes[0].status == "error"
    assert statuses(d) == {
        "revenue_daily": "error",
        "stg_orders": "success",
        "raw_orders": "success",
    }
    assert d.reason == "revenue_daily errored in the build step"
    assert d.source == "exposures"


def test_failing_run_refreshes_behind_a_skipped_model_when_another_was_rebuilt() -> None:
    """customers was skipped (its parent's test failed), orders rebuilt: skipped is no error.

    dbt itself marks the customer_360 exposure skipped in run_results; the
    rule reads the models, and orders' new data is in the data source.
    """
    d = exposure_decisions("failing", "failing", "docs")["Customer 360"]
    assert d.action == "refresh"
    assert statuses(d) == {"orders": "success", "customers": "skipped"}
    assert d.reason == "orders rebuilt; customers skipped, which is not an error"


def test_failing_run_refreshes_what_only_reads_rebuilt_models() -> None:
    d = exposure_decisions("failing", "failing", "docs")["Revenue"]
    assert d.action == "refresh"
    assert "error" not in statuses(d).values()


def test_the_docs_step_alone_would_refresh_nothing() -> None:
    """Read as the build, `dbt docs generate` is left out: no build, nothing rebuilt."""
    decisions = exposure_decisions("failing", "docs")
    assert {d.action for d in decisions.values()} == {"skip"}
    assert decisions["Pipeline Health"].reason.startswith("nothing upstream was rebuilt")


def test_a_retry_that_fixed_the_run_refreshes_the_skipped_item() -> None:
    decisions = exposure_decisions("failing", "failing", "docs", "retry")
    assert decisions["Pipeline Health"].action == "refresh"
    assert statuses(decisions["Pipeline Health"])["revenue_daily"] == "success"


def test_a_seed_only_step_refreshes_what_views_show_of_the_seeds() -> None:
    """`dbt seed` rebuilt raw_orders; Pipeline Health reads it through the stg_orders view."""
    decisions = exposure_decisions("green", "multistep/1-seed")
    assert decisions["Pipeline Health"].action == "refresh"
    assert statuses(decisions["Pipeline Health"])["raw_orders"] == "success"
    assert decisions["Customer 360"].action == "skip"  # two tables, neither rebuilt


def test_view_and_ephemeral_expansion() -> None:
    assert upstream_nodes(manifest(), [m("revenue_summary")]) == (
        m("revenue_summary"),  # the view itself stays
        m("orders"),  # a table: expansion stops
        m("stg_exchange_rates"),
        m("stg_payments"),  # reached through the ephemeral int_order_payments, left out
        f"source.{P}.fx.exchange_rates",
        f"seed.{P}.raw_payments",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([m("orders")], [m("orders")]),
        ([m("int_order_payments")], [m("stg_payments"), f"seed.{P}.raw_payments"]),
        ([f"snapshot.{P}.customers_snapshot"], [f"snapshot.{P}.customers_snapshot"]),
        ([f"test.{P}.assert_customer_status_known", m("orders")], [m("orders")]),
        (["metric.relay_shop.revenue"], ["metric.relay_shop.revenue"]),  # unknown: kept
        ([m("orders"), m("orders")], [m("orders")]),
        ([], []),
    ],
)
def test_upstream_nodes(given: list[str], expected: list[str]) -> None:
    assert list(upstream_nodes(manifest(), given)) == expected


def test_a_table_rebuilt_beneath_a_view_refreshes_the_item_on_the_view() -> None:
    d = decide(FINANCE, [m("revenue_summary")], manifest(), build(orders="success"))
    assert d.action == "refresh"
    assert statuses(d)["revenue_summary"] == NOT_RUN
    assert d.reason == "orders rebuilt"


def test_an_errored_view_skips_the_item() -> None:
    d = decide(
        FINANCE,
        [m("revenue_summary")],
        manifest(),
        build(revenue_summary="error", orders="success"),
    )
    assert (d.action, d.nodes[0].name) == ("skip", "revenue_summary")


@pytest.mark.parametrize(
    ("upstream", "statuses_", "action", "reason"),
    [
        ([], {}, "skip", "no dbt node upstream of it"),
        ([m("orders")], {}, "skip", "nothing upstream was rebuilt (orders: not run)"),
        ([m("stg_exchange_rates")], {"stg_exchange_rates": "reused"}, "skip",
         "nothing upstream was rebuilt (stg_exchange_rates: reused, exchange_rates: not run)"),
        ([m("customers")], {"customers": "skipped"}, "skip",
         "nothing upstream was rebuilt (customers: skipped)"),
        ([m("orders")], {"orders": "partial success"}, "skip", "orders errored in the build step"),
        ([m("orders"), m("customers")], {"orders": "success", "customers": "error"}, "skip",
         "customers errored in the build step"),
        ([m("orders"), m("customers"), m("revenue_daily"), f"seed.{P}.raw_orders"],
         {"orders": "success", "customers": "success", "revenue_daily": "success",
          f"seed.{P}.raw_orders": "success"},
         "refresh", "orders, customers, revenue_daily and 1 more rebuilt"),
    ],
)  # fmt: skip
def test_the_rule(upstream: list[str], statuses_: dict[str, str], action: str, reason: str) -> None:
    d = decide(CUSTOMERS, upstream, manifest(), build(**statuses_), source="tableau_lineage")
    assert (d.action, d.reason, d.source) == (action, reason, "tableau_lineage")


def test_nodes_are_listed_errors_first_then_rebuilt_then_the_rest() -> None:
    d = decide(
        PIPELINE,
        [m("customers"), m("orders"), m("revenue_daily")],
        manifest(),
        build(customers="skipped", orders="success", revenue_daily="error"),
    )
    assert [n.name for n in d.nodes] == ["revenue_daily", "orders", "customers"]


def test_two_exposures_on_one_item_are_one_decision() -> None:
    targets = tableau_exposures(manifest("failing"))
    one_item = dict.fromkeys((t.ref for t in targets), PIPELINE)
    [d] = decide_exposures(
        targets, one_item, manifest("failing"), build_of([(1, results("failing"))])
    )
    assert d.action == "skip"  # revenue_daily, behind one of them, errored
    assert {"customers", "revenue_summary", "revenue_daily"} <= set(statuses(d))


def test_an_unresolved_reference_gets_no_decision() -> None:
    targets = tableau_exposures(manifest())
    decisions = decide_exposures(targets, {targets[0].ref: CUSTOMERS}, manifest(), combine([]))
    assert [d.item for d in decisions] == [CUSTOMERS]


def test_relation_index_holds_models_seeds_snapshots_and_sources() -> None:
    index = relation_index(manifest())
    assert index["relay_shop.analytics.orders"] == (m("orders"),)
    assert index["relay_shop.analytics.raw_orders"] == (f"seed.{P}.raw_orders",)
    assert index["relay_shop.snapshots.customers_snapshot"] == (f"snapshot.{P}.customers_snapshot",)
    assert index["relay_shop.fx.exchange_rates"] == (f"source.{P}.fx.exchange_rates",)
    assert len(index) == 13  # 8 models (not the ephemeral), 3 seeds, 1 snapshot, 1 source
    assert not any("dbt_test__audit" in relation for relation in index)


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (['"RELAY_SHOP"."ANALYTICS"."ORDERS"'], [m("orders")]),
        (["[relay_shop].[analytics].[revenue_summary]"], [m("revenue_summary")]),
        (["analytics.customers"], [m("customers")]),  # no database: matched on the suffix
        (["fx.exchange_rates"], [f"source.{P}.fx.exchange_rates"]),
        (["other_db.analytics.orders", "relay_shop.public.orders"], []),  # not dbt's tables
        (["orders", "relay_shop.analytics.orders"], [m("orders")]),
        ([""], []),
    ],
)
def test_nodes_for_relations(tables: list[str], expected: list[str]) -> None:
    assert list(nodes_for_relations(manifest(), tables)) == expected


def test_touched_relations_of_the_failing_build() -> None:
    touched = touched_relations(manifest("failing"), build_of([(1, results("failing"))]))
    assert "relay_shop.analytics.revenue_daily" in touched  # errored: its items are explained
    assert "relay_shop.analytics.customers" in touched  # skipped: likewise
    assert "relay_shop.snapshots.customers_snapshot" in touched
    assert "relay_shop.fx.exchange_rates" not in touched  # a source is never run
    assert not any("dbt_test__audit" in relation for relation in touched)
    assert len(touched) == 12


def test_touched_relations_include_the_views_over_a_rebuilt_table() -> None:
    touched = touched_relations(manifest(), build(orders="success"))
    assert touched == {"relay_shop.analytics.orders", "relay_shop.analytics.revenue_summary"}


def test_touched_relations_of_docs_generate_alone_are_none() -> None:
    assert touched_relations(manifest("docs"), build_of([(5, results("docs"))])) == set()


RELATIONAL = sorted(
    uid
    for uid, n in {**manifest().nodes, **manifest().sources}.items()
    if n.resource_type != "test"
)
STATUSES = ["success", "error", "skipped", "partial success", "no-op", "reused", "pass", "fail"]


@given(
    upstream=st.lists(st.sampled_from(RELATIONAL), max_size=6),
    statuses_=st.dictionaries(st.sampled_from(RELATIONAL), st.sampled_from(STATUSES)),
)
def test_property_errored_never_refreshes_and_rebuilt_without_error_always_does(
    upstream: list[str], statuses_: dict[str, str]
) -> None:
    d = decide(PIPELINE, upstream, manifest(), BuildResult(statuses=statuses_))
    seen = [statuses_.get(uid, NOT_RUN) for uid in upstream_nodes(manifest(), upstream)]
    if any(s in ERRORED for s in seen):
        assert d.action == "skip"
    elif "success" in seen:
        assert d.action == "refresh"
    else:
        assert d.action == "skip"
    assert sorted(n.status for n in d.nodes) == sorted(seen)
