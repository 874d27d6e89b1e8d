"""The demo site: nested projects, a shared workbook name, a live and a failing source.

Its lineage (tables and connections, for the Metadata API) has published
extracts, a live source and workbooks on published sources; the tables are
Snowflake-style upper case, `ANALYTICS.MARTS.*`. docs/emulator.md lists it.
"""

from __future__ import annotations

from typing import Any

from dbt_tableau_relay.emulators.tableau.content import DEFAULT_PROJECT, Content, RefreshOutcome

_LEDGER_NOTES = (
    "com.tableausoftware.nativeapi.exceptions.DataSourceException: "
    "[Microsoft][ODBC Driver 17 for SQL Server][SQL Server]Login failed for user "
    "'svc_tableau'.\nUnable to connect to the server \"ledger-db.internal\". "
    "Check that the server is running and that you have access privileges to the "
    "requested database."
)


def demo_content() -> Content:
    """The demo site: nested projects, a shared workbook name, a live and a failing source."""
    content = Content()
    for path in (DEFAULT_PROJECT, "Sales", "Finance", "Finance/Regional", "Marketing"):
        content.add_project(path)
    for path in (
        "Sales/Executive Overview",
        "Finance/Executive Overview",
        "Finance/Regional/EMEA Revenue",
        "Marketing/Campaign Performance",
        "Sales/Pipeline Health",
    ):
        content.add_item("workbook", path)
    content.add_item("datasource", "Finance/Revenue")
    content.add_item("datasource", "Sales/Orders")
    content.add_item(
        "datasource", "Sales/Live Inventory", refreshable=False, connection_type="postgres"
    )
    content.add_item(
        "datasource",
        "Finance/Legacy Ledger",
        outcome=RefreshOutcome(1, _LEDGER_NOTES),
        connection_type="sqlserver",
    )
    _demo_catalog(content)
    return content


def _demo_catalog(content: Content) -> None:
    """Lineage for the demo: extracts, a live source, workbooks on published sources."""
    content.catalog.add_table("inventory.public.stock_levels", connection_type="postgres")
    content.catalog.add_table("LEDGER.dbo.GL_ENTRIES", connection_type="sqlserver")
    marts = "ANALYTICS.MARTS."
    sources = {
        "Finance/Revenue": [marts + "REVENUE_DAILY"],
        "Sales/Orders": [marts + "FCT_ORDERS", marts + "DIM_CUSTOMERS"],
        "Sales/Live Inventory": ["inventory.public.stock_levels"],
        "Finance/Legacy Ledger": ["LEDGER.dbo.GL_ENTRIES"],
    }
    for path, tables in sources.items():
        content.connect(content.items[content.luid("datasource", path)], tables=tables)
    # Every demo workbook keeps an extract of its own: the REST tests refresh them all.
    workbooks = {
        "Sales/Executive Overview": [_on("Orders", "Sales/Orders"), _extract("Targets")],
        "Finance/Executive Overview": [_on("Revenue", "Finance/Revenue"), _extract("Budget")],
        "Finance/Regional/EMEA Revenue": [_extract("Revenue", "REVENUE_DAILY")],
        "Marketing/Campaign Performance": [_extract("Campaigns", "CAMPAIGNS")],
        "Sales/Pipeline Health": [_extract("Pipeline", "PIPELINE", "FCT_ORDERS")],
    }
    for path, embedded in workbooks.items():
        content.connect(content.items[content.luid("workbook", path)], embedded=embedded)


def _on(name: str, published: str) -> dict[str, Any]:
    return {"name": name, "published": published}


def _extract(name: str, *tables: str) -> dict[str, Any]:
    names = tables or (name.upper(),)
    return {"name": name, "has_extracts": True, "tables": [f"ANALYTICS.MARTS.{t}" for t in names]}
