"""A relay with lineage rules, against both emulators and the real dbt artifacts.

The dbt project in tests/fixtures/dbt_project has three exposures, one per
way of naming a Tableau item; the Tableau site (the demo's, `demo_lineage`)
holds those items (same LUIDs, the URL's workbook number) and, for Tableau's
own lineage, extracts and live connections over the project's tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import PAT_NAME, PAT_SECRET, SECRET, Relay

from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.demo_lineage import LINEAGE_SITE as SITE
from dbt_tableau_relay.emulators.dbt_cloud import DbtCloudEmulator
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.store import Store

ARTIFACTS = Path(__file__).parents[1] / "fixtures" / "dbt-artifacts"
JOB = 123


def lineage_rules(*sources: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "downstream",
            "on": {"job_id": [JOB], "status": "any"},
            "refresh": [{source: True} for source in sources],
        }
    ]


def artifacts(name: str) -> dict[str, Any]:
    folder = ARTIFACTS / name
    return {f: json.loads((folder / f).read_text()) for f in ("manifest.json", "run_results.json")}


def build_then_docs(run: str) -> list[dict[str, Any]]:
    """A job's steps: `dbt build` with the run's artifacts, then `dbt docs generate`."""
    return [
        {"command": "dbt build", "artifacts": artifacts(run)},
        {"command": "dbt docs generate", "artifacts": artifacts("docs")},
    ]


@dataclass
class LineageRelay(Relay):
    cloud: DbtCloudEmulator


def settings_for(
    tableau: Emulator, cloud: DbtCloudEmulator, database_url: str, **options: Any
) -> Settings:
    rules = options.pop("rules", lineage_rules("exposures", "tableau_lineage"))
    reconcile = options.pop("reconcile_seconds", None)
    return Settings.model_validate(
        {
            "database_url": database_url,
            "dbt": {
                "webhook_secrets": [SECRET],
                "cloud": {
                    "access_url": cloud.url,
                    "account_id": cloud.account_id,
                    "api_token": cloud.token,
                    "reconcile_seconds": reconcile,
                },
            },
            "tableau": {
                "server_url": tableau.url,
                "site": "marketing",
                "token_name": PAT_NAME,
                "token_secret": PAT_SECRET,
                "request_timeout": 5.0,
            },
            "rules": rules,
            "worker": {"poll_interval": 0.1, "retry_base_seconds": 0.05, "max_attempts": 4},
        }
    )


@contextmanager
def emulators() -> Iterator[tuple[Emulator, DbtCloudEmulator]]:
    with (
        Emulator(
            site="marketing",
            pat_name=PAT_NAME,
            pat_secret=PAT_SECRET,
            job_duration=0.2,
            content=SITE,  # this site only, not the demo's
        ) as tableau,
        DbtCloudEmulator() as cloud,
    ):
        yield tableau, cloud


@contextmanager
def running(
    tableau: Emulator, cloud: DbtCloudEmulator, database_url: str, **options: Any
) -> Iterator[LineageRelay]:
    settings = settings_for(tableau, cloud, database_url, **options)
    with ExitStack() as stack:
        server = stack.enter_context(serve_in_thread(relay_app(settings)))
        store = Store(database_url)
        stack.callback(store.dispose)
        yield LineageRelay(server.url, tableau, store, cloud)
