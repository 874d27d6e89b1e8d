"""The artifact reader, against the real artifacts dbt wrote (tests/fixtures/dbt-artifacts)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dbt_tableau_relay.errors import ArtifactError, LineageError, RelayError
from dbt_tableau_relay.lineage.artifacts import (
    Manifest,
    RunResults,
    load_manifest,
    load_run_results,
    parse_manifest,
    parse_run_results,
)

ARTIFACTS = Path(__file__).parents[1] / "fixtures" / "dbt-artifacts"
P = "relay_shop"


@cache
def manifest(name: str) -> Manifest:
    return load_manifest(ARTIFACTS / name / "manifest.json")


@cache
def run_results(name: str) -> RunResults:
    return load_run_results(ARTIFACTS / name / "run_results.json")


def raw(name: str, artifact: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ARTIFACTS / name / artifact).read_text())
    return data


@pytest.mark.parametrize(
    ("name", "version", "dbt_version"),
    [("green", 12, "1.11.16"), ("legacy/v11", 11, "1.7.20"), ("legacy/v10", 10, "1.6.19")],
)
def test_manifest_versions_are_read(name: str, version: int, dbt_version: str) -> None:
    m = manifest(name)
    assert (m.info.kind, m.info.version, m.info.dbt_version) == ("manifest", version, dbt_version)
    assert m.info.invocation_id


@pytest.mark.parametrize("name", ["green", "legacy/v11", "legacy/v10"])
def test_nodes_carry_what_lineage_needs(name: str) -> None:
    m = manifest(name)
    orders = m.nodes[f"model.{P}.orders"]
    assert (orders.resource_type, orders.name, orders.materialized) == ("model", "orders", "table")
    assert orders.relation_name == '"relay_shop"."analytics"."orders"'
    assert orders.depends_on == (f"model.{P}.stg_orders", f"model.{P}.int_order_payments")
    assert m.nodes[f"model.{P}.int_order_payments"].materialized == "ephemeral"
    assert m.nodes[f"model.{P}.int_order_payments"].relation_name is None
    assert m.nodes[f"model.{P}.stg_orders"].materialized == "view"
    assert m.nodes[f"snapshot.{P}.customers_snapshot"].relation_name == (
        '"relay_shop"."snapshots"."customers_snapshot"'
    )


@pytest.mark.parametrize("name", ["green", "legacy/v10"])
def test_seeds_have_no_upstream_nodes(name: str) -> None:
    seed = manifest(name).nodes[f"seed.{P}.raw_orders"]
    assert (seed.resource_type, seed.depends_on) == ("seed", ())


@pytest.mark.parametrize("name", ["green", "legacy/v11", "legacy/v10"])
def test_sources_are_read_with_their_relation(name: str) -> None:
    m = manifest(name)
    fx = m.sources[f"source.{P}.fx.exchange_rates"]
    assert (fx.resource_type, fx.relation_name) == ("source", '"relay_shop"."fx"."exchange_rates"')
    assert m.node(fx.unique_id) == fx
    assert m.node("model.nowhere.x") is None


@pytest.mark.parametrize("name", ["green", "legacy/v11", "legacy/v10"])
def test_exposure_meta_is_merged_with_config_meta(name: str) -> None:
    """dbt 1.6/1.7 keep config.meta apart from meta (raw files below); the reader merges."""
    exposures = manifest(name).exposures
    assert exposures[f"exposure.{P}.customer_360"].meta == {
        "tableau_datasource_id": "8b0e4d1c-25a7-4f3e-b6d9-71c2a0e95b44"
    }
    assert exposures[f"exposure.{P}.pipeline_health"].meta == {
        "tableau_workbook_id": "3f1c9a52-7d2e-4b8a-9c61-0e5d4b7a2f10"
    }


def test_legacy_manifests_keep_config_meta_apart() -> None:
    """The reason for the merge, seen in a real v10 file."""
    exposure = raw("legacy/v10", "manifest.json")["exposures"][f"exposure.{P}.customer_360"]
    assert exposure["meta"] == {}
    assert "tableau_datasource_id" in exposure["config"]["meta"]


def test_exposures_carry_type_url_and_depends_on() -> None:
    finance = manifest("green").exposures[f"exposure.{P}.finance_revenue"]
    assert (finance.name, finance.type, finance.label) == (
        "finance_revenue",
        "dashboard",
        "Finance Revenue",
    )
    assert finance.url == "https://tableau.example.com/#/site/marketing/workbooks/1234/views"
    assert finance.depends_on == (f"model.{P}.revenue_summary",)
    assert manifest("green").exposures[f"exposure.{P}.customer_360"].url is None


@pytest.mark.parametrize(
    ("name", "version", "which", "command"),
    [
        ("green", 6, "build", "dbt build"),
        ("failing", 6, "build", "dbt build --vars {scenario: failing}"),
        ("docs", 6, "generate", "dbt docs generate"),
        ("retry", 6, "build", "dbt retry --vars {scenario: green}"),
        ("multistep/1-seed", 6, "seed", "dbt seed"),
        ("multistep/3-snapshot", 6, "snapshot", "dbt snapshot"),
        ("multistep/4-test", 6, "test", "dbt test --select +revenue_daily +revenue_summary"),
        ("legacy/v11", 5, "build", "dbt build"),
        ("legacy/v10", 4, "build", "dbt build"),
    ],
)
def test_run_results_args(name: str, version: int, which: str, command: str) -> None:
    r = run_results(name)
    assert (r.info.kind, r.info.version, r.which, r.invocation_command) == (
        "run-results",
        version,
        which,
        command,
    )
    assert r.invocation_id == raw(name, "run_results.json")["metadata"]["invocation_id"]


def test_failing_run_results_statuses() -> None:
    statuses = run_results("failing").statuses()
    assert statuses[f"model.{P}.revenue_daily"] == "error"
    assert statuses[f"model.{P}.customers"] == "skipped"
    assert statuses[f"test.{P}.assert_customer_status_known"] == "fail"
    assert statuses[f"model.{P}.orders"] == "success"
    assert f"model.{P}.int_order_payments" not in statuses  # ephemerals never run


def test_docs_generate_lists_every_node_as_success() -> None:
    """The trap: the failing job's last step says revenue_daily succeeded."""
    statuses = run_results("docs").statuses()
    assert statuses[f"model.{P}.revenue_daily"] == "success"
    assert set(statuses.values()) == {"success"}


def test_raw_bytes_and_parsed_json_read_alike() -> None:
    path = ARTIFACTS / "failing" / "run_results.json"
    assert parse_run_results(path.read_bytes()) == parse_run_results(json.loads(path.read_text()))


def test_unknown_fields_are_ignored() -> None:
    doc = raw("green", "manifest.json")
    doc["a_field_from_dbt_2"] = {"x": 1}
    doc["nodes"][f"model.{P}.orders"]["new_config"] = [1, 2]
    assert parse_manifest(doc).nodes[f"model.{P}.orders"].materialized == "table"


def test_a_future_schema_version_is_read() -> None:
    doc = raw("green", "manifest.json")
    doc["metadata"]["dbt_schema_version"] = "https://schemas.getdbt.com/dbt/manifest/v13.json"
    assert parse_manifest(doc).info.version == 13


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>gateway timeout</html>", "manifest.json is not JSON"),
        (b"[1, 2]", "manifest.json is not a JSON object"),
        (b'{"nodes": {}}', "not a dbt manifest artifact: no metadata.dbt_schema_version"),
        (b'{"metadata": {"dbt_schema_version": 12}}', "not a dbt manifest artifact"),
        (
            b'{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json"}}',
            "expected a dbt manifest artifact, got catalog v1",
        ),
    ],
)
def test_a_file_that_is_not_a_manifest_is_refused(content: bytes, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        parse_manifest(content)


def test_run_results_given_as_manifest_says_what_it_is() -> None:
    with pytest.raises(ArtifactError, match="expected a dbt manifest artifact, got run-results v6"):
        parse_manifest((ARTIFACTS / "green" / "run_results.json").read_bytes())


def test_manifest_given_as_run_results_says_what_it_is() -> None:
    with pytest.raises(
        ArtifactError, match="expected a dbt run-results artifact, got manifest v12"
    ):
        parse_run_results((ARTIFACTS / "green" / "manifest.json").read_bytes())


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("nodes",), [], "nodes: expected an object, got list"),
        (("nodes", f"model.{P}.orders", "depends_on", "nodes"), "x", "depends_on.nodes"),
        (("nodes", f"model.{P}.orders", "name"), 7, "node 'model.relay_shop.orders' name"),
        (("exposures", f"exposure.{P}.customer_360", "meta"), "m", "customer_360' meta"),
    ],
)
def test_a_malformed_manifest_field_is_named(
    path: tuple[str, ...], value: object, message: str
) -> None:
    doc = raw("green", "manifest.json")
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ArtifactError, match=message):
        parse_manifest(doc)


def test_malformed_results_are_named() -> None:
    doc = raw("green", "run_results.json")
    doc["results"][3]["status"] = None
    with pytest.raises(ArtifactError, match=r"results\[3\] status"):
        parse_run_results(doc)
    doc["results"] = {}
    with pytest.raises(ArtifactError, match="results is not a list"):
        parse_run_results(doc)


def test_a_missing_file_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot be read"):
        load_manifest(tmp_path / "manifest.json")


def test_artifact_errors_are_relay_errors() -> None:
    assert issubclass(ArtifactError, LineageError)
    assert issubclass(LineageError, RelayError)
