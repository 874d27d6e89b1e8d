"""Exposures that point at Tableau items: the real project's three, and each way to name one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from dbt_tableau_relay.lineage.artifacts import Exposure, load_manifest, parse_manifest
from dbt_tableau_relay.lineage.exposures import (
    ByLuid,
    ByUrlId,
    ignored_exposures,
    parse_tableau_url,
    tableau_exposures,
    tableau_refs,
)

ARTIFACTS = Path(__file__).parents[1] / "fixtures" / "dbt-artifacts"
P = "relay_shop"
WORKBOOK = "3f1c9a52-7d2e-4b8a-9c61-0e5d4b7a2f10"
DATASOURCE = "8b0e4d1c-25a7-4f3e-b6d9-71c2a0e95b44"
FINANCE_URL = "https://tableau.example.com/#/site/marketing/workbooks/1234/views"


def exposure(**fields: object) -> Exposure:
    base = Exposure(unique_id=f"exposure.{P}.x", name="x", type="dashboard")
    return replace(base, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["green", "failing", "legacy/v11", "legacy/v10"])
def test_the_three_exposures_are_found_with_their_reference_kinds(name: str) -> None:
    targets = tableau_exposures(load_manifest(ARTIFACTS / name / "manifest.json"))
    assert [(t.name, t.ref) for t in targets] == [
        ("customer_360", ByLuid("datasource", DATASOURCE)),
        ("finance_revenue", ByUrlId("workbook", "marketing", 1234, FINANCE_URL)),
        ("pipeline_health", ByLuid("workbook", WORKBOOK)),
    ]
    by_name = {t.name: t for t in targets}
    assert by_name["pipeline_health"].depends_on == (
        f"model.{P}.revenue_daily",
        f"model.{P}.stg_orders",
    )
    assert by_name["customer_360"].label == "Customer 360"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (FINANCE_URL, ("workbook", "marketing", 1234)),
        ("https://tableau.example.com/#/site/sales/datasources/567", ("datasource", "sales", 567)),
        (
            "https://t.example.com/#/site/sales/datasources/567/connections",
            ("datasource", "sales", 567),
        ),
        ("https://t.example.com/#/workbooks/42/views", ("workbook", "", 42)),  # Default site
        ("https://t.example.com/#/datasources/9", ("datasource", "", 9)),
        (
            "https://10ax.online.tableau.com/#/site/acme/workbooks/77?:origin=card_share_link",
            ("workbook", "acme", 77),
        ),
        ("http://tableau.internal:8000/#/site/fin%20ance/workbooks/5", ("workbook", "fin ance", 5)),
        ("  https://t.example.com/#/workbooks/42  ", ("workbook", "", 42)),
    ],
)
def test_tableau_urls_are_parsed(url: str, expected: tuple[str, str, int]) -> None:
    ref = parse_tableau_url(url)
    assert ref is not None
    assert (ref.kind, ref.site, ref.id) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://tableau.example.com/#/site/sales/views/PipelineHealth/Overview",  # a view
        "https://tableau.example.com/#/site/sales/workbooks",  # no id
        "https://tableau.example.com/#/site/sales/workbooks/abc",
        "https://tableau.example.com/#/site/sales/workbooks/12x",
        "https://tableau.example.com/#/site/sales/projects/12",
        "https://looker.example.com/dashboards/1234",
        "https://example.com/workbooks/1234",  # no "#/" route
        "tableau.example.com/#/workbooks/1",  # no scheme
        "mailto:x@example.com",
        "",
    ],
)
def test_urls_that_name_no_workbook_or_data_source(url: str) -> None:
    assert parse_tableau_url(url) is None


def test_meta_luid_wins_over_the_url() -> None:
    e = exposure(meta={"tableau_workbook_id": WORKBOOK}, url=FINANCE_URL)
    assert tableau_refs(e) == (ByLuid("workbook", WORKBOOK),)


def test_an_exposure_with_both_ids_points_at_both_items() -> None:
    e = exposure(meta={"tableau_workbook_id": WORKBOOK, "tableau_datasource_id": DATASOURCE})
    assert tableau_refs(e) == (ByLuid("workbook", WORKBOOK), ByLuid("datasource", DATASOURCE))


@pytest.mark.parametrize("kind", ["notebook", "analysis", "ml", "application"])
def test_other_exposure_types_are_not_candidates(kind: str) -> None:
    assert tableau_refs(exposure(type=kind, meta={"tableau_workbook_id": WORKBOOK})) is None
    assert tableau_refs(exposure(type=kind, url=FINANCE_URL)) is None


def test_a_dashboard_with_no_tableau_hint_is_not_a_candidate() -> None:
    assert tableau_refs(exposure(url="https://looker.example.com/dashboards/1")) is None
    assert tableau_refs(exposure(meta={"owner_team": "sales"})) is None


@pytest.mark.parametrize("value", [1234, "1234", "", "3f1c9a52-7d2e-4b8a-9c61", None])
def test_a_meta_value_that_is_not_a_luid_is_ignored_with_a_reason(value: object) -> None:
    refs = tableau_refs(exposure(meta={"tableau_workbook_id": value}, url=FINANCE_URL))
    if value is None:  # an unset key: the URL is used
        assert refs == (ByUrlId("workbook", "marketing", 1234, FINANCE_URL),)
    else:
        assert isinstance(refs, str)
        assert "tableau_workbook_id" in refs
        assert "not a Tableau LUID" in refs


def test_ignored_exposures_of_a_real_manifest() -> None:
    doc = json.loads((ARTIFACTS / "green" / "manifest.json").read_text())
    doc["exposures"][f"exposure.{P}.pipeline_health"]["meta"]["tableau_workbook_id"] = 1234
    doc["exposures"][f"exposure.{P}.pipeline_health"]["config"]["meta"] = {}
    manifest = parse_manifest(doc)
    assert [t.name for t in tableau_exposures(manifest)] == ["customer_360", "finance_revenue"]
    [(uid, why)] = ignored_exposures(manifest)
    assert uid == f"exposure.{P}.pipeline_health"
    assert "1234" in why


def test_a_luid_keeps_its_spelling_without_surrounding_spaces() -> None:
    e = exposure(meta={"tableau_datasource_id": f"  {DATASOURCE.upper()} "})
    assert tableau_refs(e) == (ByLuid("datasource", DATASOURCE.upper()),)
