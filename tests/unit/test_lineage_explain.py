"""`explain` lines and the JSON stored with each job, from the real failing run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbt_tableau_relay.errors import LineageError
from dbt_tableau_relay.lineage.artifacts import load_manifest, load_run_results
from dbt_tableau_relay.lineage.decide import decide
from dbt_tableau_relay.lineage.explain import explain_lines, from_json, ordered, to_json
from dbt_tableau_relay.lineage.exposures import tableau_exposures
from dbt_tableau_relay.lineage.model import Decision, NodeVerdict, TableauItem
from dbt_tableau_relay.lineage.steps import build_of

ARTIFACTS = Path(__file__).parents[1] / "fixtures" / "dbt-artifacts"
LUIDS = {
    "pipeline_health": (
        "workbook",
        "3f1c9a52-7d2e-4b8a-9c61-0e5d4b7a2f10",
        "Pipeline Health",
        "Sales",
    ),
    "customer_360": ("datasource", "8b0e4d1c-25a7-4f3e-b6d9-71c2a0e95b44", "Customer 360", "CS"),
    "finance_revenue": ("workbook", "0c9d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f", "Revenue", "Finance"),
}


def failing_decisions() -> list[Decision]:
    manifest = load_manifest(ARTIFACTS / "failing" / "manifest.json")
    steps = [(4, "failing"), (5, "docs")]
    build = build_of([(i, load_run_results(ARTIFACTS / s / "run_results.json")) for i, s in steps])
    return [
        decide(TableauItem(*LUIDS[t.name]), t.depends_on, manifest, build)  # type: ignore[arg-type]
        for t in tableau_exposures(manifest)
    ]


def verdict(unique_id: str, status: str) -> NodeVerdict:
    return NodeVerdict(unique_id, status)


def test_explain_lines_of_the_failing_run() -> None:
    assert explain_lines(failing_decisions()) == [
        "refresh  CS/Customer 360        orders: success, customers: skipped",
        "refresh  Finance/Revenue        revenue_summary: success, orders: success, "
        "stg_exchange_rates: success, stg_payments: success, raw_payments: success, "
        "exchange_rates: not run",
        "skip     Sales/Pipeline Health  revenue_daily: error, stg_orders: success, "
        "raw_orders: success",
    ]


def test_explain_lines_with_reasons() -> None:
    lines = explain_lines(failing_decisions(), reasons=True)
    assert lines[2].endswith("raw_orders: success  (revenue_daily errored in the build step)")


def test_order_is_by_path_whatever_order_decisions_come_in() -> None:
    decisions = failing_decisions()
    assert explain_lines(reversed(decisions)) == explain_lines(decisions)
    assert [d.item.path for d in ordered(decisions)] == [
        "CS/Customer 360",
        "Finance/Revenue",
        "Sales/Pipeline Health",
    ]


def test_an_item_without_a_project_and_without_nodes() -> None:
    item = TableauItem("datasource", "luid-1", "Orders")
    [line] = explain_lines([Decision(item, "skip", (), "tableau_lineage", "no dbt node upstream")])
    assert line == "skip     Orders  (no dbt nodes)"


def test_no_decisions_no_lines() -> None:
    assert explain_lines([]) == []


def test_to_json_of_the_failing_run() -> None:
    doc = to_json(failing_decisions())
    assert json.loads(json.dumps(doc)) == doc
    pipeline = doc[2]
    assert pipeline == {
        "kind": "workbook",
        "luid": "3f1c9a52-7d2e-4b8a-9c61-0e5d4b7a2f10",
        "name": "Pipeline Health",
        "project": "Sales",
        "path": "Sales/Pipeline Health",
        "action": "skip",
        "source": "exposures",
        "reason": "revenue_daily errored in the build step",
        "nodes": [
            {
                "unique_id": "model.relay_shop.revenue_daily",
                "name": "revenue_daily",
                "status": "error",
            },
            {"unique_id": "model.relay_shop.stg_orders", "name": "stg_orders", "status": "success"},
            {"unique_id": "seed.relay_shop.raw_orders", "name": "raw_orders", "status": "success"},
        ],
    }


def test_from_json_reads_back_what_to_json_wrote() -> None:
    decisions = failing_decisions()
    stored = json.dumps(to_json(decisions))
    assert from_json(json.loads(stored)) == ordered(decisions)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: {"not": "a list"}, "a JSON list of decisions"),
        (lambda d: [*d, "x"], "decision 3 is not an object"),
        (lambda d: [{**d[0], "action": "maybe"}], "decision 0: action is 'maybe'"),
        (lambda d: [{**d[0], "kind": "view"}], "decision 0: kind is 'view'"),
        (lambda d: [{**d[0], "source": None}], "decision 0: source is None"),
        (lambda d: [{k: v for k, v in d[0].items() if k != "luid"}], "luid is missing"),
        (lambda d: [{**d[0], "project": 7}], "project is not a string"),
        (lambda d: [{**d[0], "nodes": {}}], "nodes is not a list"),
        (lambda d: [{**d[0], "nodes": [{"unique_id": "model.a.b"}]}], "node 0: status is missing"),
    ],
)
def test_from_json_refuses_a_malformed_explanation(mutate: Any, message: str) -> None:
    with pytest.raises(LineageError, match=message):
        from_json(mutate(to_json(failing_decisions())))


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@given(
    items=st.lists(
        st.builds(
            TableauItem,
            kind=st.sampled_from(["workbook", "datasource"]),
            luid=st.uuids().map(str),
            name=names,
            project=st.none() | names,
        ),
        max_size=5,
    ),
    action=st.sampled_from(["refresh", "skip"]),
    status=st.sampled_from(["success", "error", "skipped", "not run"]),
)
def test_property_json_round_trip(items: list[TableauItem], action: Any, status: str) -> None:
    decisions = [
        Decision(item, action, (verdict("model.p.m", status),), "tableau_lineage", "why")
        for item in items
    ]
    assert from_json(json.loads(json.dumps(to_json(decisions)))) == ordered(decisions)
