"""The demo's second half: a failing dbt run, and lineage deciding what to refresh.

A dbt Cloud emulator holds one run of a real dbt project (the artifacts in
`demo_artifacts/`, made by dbt itself: see tests/fixtures/dbt-artifacts):
step 1 `dbt build`, where `revenue_daily` errors and `customers` is skipped
after a failed test, then step 2 `dbt docs generate`, whose run_results call
every node a success. A Tableau emulator holds the items the project's three
exposures point at, plus extracts and live connections over its tables. The
relay's one rule refreshes by lineage; the demo prints every decision.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.emulators.dbt_cloud import DbtCloudEmulator
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.lineage.explain import explain_lines, from_json
from dbt_tableau_relay.lineage.model import Decision
from dbt_tableau_relay.runs import lineage_jobs_of_run
from dbt_tableau_relay.samples import post_event, sample_event
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.states import FINAL_STATES
from dbt_tableau_relay.store import Store

Echo = Callable[[str], None]
DBT_JOB = 123
SECRET = "demo-lineage-secret"  # noqa: S105 - the demo's own
PAT_NAME, PAT_SECRET = "demo-pat", "demo-pat-secret"
PIPELINE_HEALTH = "3f1c9a52-7d2e-4b8a-9c61-0e5d4b7a2f10"  # exposure meta: tableau_workbook_id
CUSTOMER_360 = "8b0e4d1c-25a7-4f3e-b6d9-71c2a0e95b44"  # exposure config.meta: datasource
ORDERS = "relay_shop.analytics.orders"
REVENUE_DAILY = "relay_shop.analytics.revenue_daily"
# What lineage should decide for the failing run (Project/Name -> action).
EXPECTED = {
    "Sales/Pipeline Health": "skip",  # its exposure depends on revenue_daily: error
    "Ops/Daily Revenue": "skip",  # its own extract reads revenue_daily
    "Sales/Customer 360": "refresh",  # orders rebuilt; customers skipped, not errored
    "Finance/Finance Revenue": "refresh",  # found by its URL; a view over rebuilt tables
    "Ops/Orders Extract": "refresh",  # Tableau's lineage: an extract reading orders
}

LINEAGE_SITE: dict[str, Any] = {
    "tables": [
        {"database": "relay_shop", "schema": "analytics", "name": n, "connection_type": "duckdb"}
        for n in ("orders", "revenue_daily", "customers")
    ],
    "workbooks": [
        {"path": "Sales/Pipeline Health", "luid": PIPELINE_HEALTH},
        {"path": "Finance/Finance Revenue", "vizportal_url_id": 1234},  # .../workbooks/1234
        {
            "path": "Ops/Daily Revenue",
            "embedded_datasources": [
                {"name": "daily", "has_extracts": True, "tables": [REVENUE_DAILY]}
            ],
        },
        {  # reads orders only through the published extract: never refreshed itself
            "path": "Ops/Orders Board",
            "embedded_datasources": [{"name": "orders", "published": "Ops/Orders Extract"}],
        },
    ],
    "datasources": [
        {"path": "Sales/Customer 360", "luid": CUSTOMER_360},
        {"path": "Ops/Orders Extract", "tables": [ORDERS]},
        {"path": "Ops/Orders Live", "refreshable": False, "tables": [ORDERS]},  # live: never
    ],
}


def demo_artifact(name: str) -> Any:
    """One of the shipped artifacts, e.g. "failing-manifest.json"."""
    packed = resources.files("dbt_tableau_relay") / "demo_artifacts" / f"{name}.gz"
    return json.loads(gzip.decompress(packed.read_bytes()))


def failing_run_steps() -> list[dict[str, Any]]:
    return [
        {
            "command": "dbt build",
            "artifacts": {
                "manifest.json": demo_artifact("failing-manifest.json"),
                "run_results.json": demo_artifact("failing-run_results.json"),
            },
        },
        {
            "command": "dbt docs generate",
            "artifacts": {"run_results.json": demo_artifact("docs-run_results.json")},
        },
    ]


def lineage_settings(tableau: Emulator, cloud: DbtCloudEmulator, folder: Path) -> Settings:
    return Settings.model_validate(
        {
            "database_url": f"sqlite:///{folder / 'lineage.db'}",
            "dbt": {
                "webhook_secrets": [SECRET],
                "cloud": {
                    "access_url": cloud.url,
                    "account_id": cloud.account_id,
                    "api_token": cloud.token,
                },
            },
            "tableau": {
                "server_url": tableau.url,
                "site": "marketing",
                "token_name": PAT_NAME,
                "token_secret": PAT_SECRET,
            },
            "rules": [
                {
                    "name": "downstream",
                    "on": {"job_id": DBT_JOB, "status": "any"},
                    "refresh": [{"exposures": True}, {"tableau_lineage": True}],
                }
            ],
            "worker": {"poll_interval": 0.2},
        }
    )


def run_lineage_demo(echo: Echo, folder: Path, timeout: float = 120.0) -> int:
    """The failing run through lineage rules; 0 when every decision is the expected one."""
    with (
        Emulator(
            site="marketing",
            pat_name=PAT_NAME,
            pat_secret=PAT_SECRET,
            job_duration=1.0,
            content=LINEAGE_SITE,
        ) as tableau,
        DbtCloudEmulator() as cloud,
    ):
        run_id = cloud.add_run(job_id=DBT_JOB, status=20, steps=failing_run_steps())
        settings = lineage_settings(tableau, cloud, folder)
        with serve_in_thread(relay_app(settings)) as relay:
            body = sample_event("completed", job_id=DBT_JOB, run_id=run_id, run_status_code=20)
            answer = post_event(f"{relay.url}/webhooks/dbt", body, SECRET)
            echo(
                f"dbt run {run_id} (job {DBT_JOB}) completed with an error: HTTP "
                f"{answer.status_code} {answer.json().get('status')}; lineage decides...\n"
            )
            decisions = wait_for_decisions(Store(settings.database_url), str(run_id), timeout)
        refreshed = len(tableau.refresh_posts())
    echo(f"$ dbt-tableau-relay explain --run {run_id}")
    for line in explain_lines(decisions):
        echo(line)
    return lineage_verdict(echo, decisions, refreshed)


def wait_for_decisions(store: Store, run_id: str, timeout: float) -> list[Decision]:
    """The run's decisions, once its refreshes have Tableau's verdict too."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            jobs = lineage_jobs_of_run(store, run_id)
            refreshes = store.list_jobs(limit=100)
            if jobs and jobs[0].state == "done" and all(j.state in FINAL_STATES for j in refreshes):
                return from_json(json.loads(jobs[0].explanation or "[]"))
            time.sleep(0.25)
        return []
    finally:
        store.dispose()


def lineage_verdict(echo: Echo, decisions: list[Decision], refreshed: int) -> int:
    found = {d.item.path: d.action for d in decisions}
    if found != EXPECTED:
        echo(f"\nUnexpected lineage decisions: {found}")
        return 1
    echo(
        f"\nLineage refreshed {refreshed} item(s) and skipped "
        f"{sum(a == 'skip' for a in found.values())}: what reads the errored model waits for a "
        "good run; the build step's artifacts were read, not the trailing docs step's."
    )
    return 0
