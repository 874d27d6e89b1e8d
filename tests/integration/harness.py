"""The relay under test: its settings, a handle on it, and waiting helpers.

The fixtures `relay_factory` and `relay` (conftest.py) start the relay under
uvicorn with its worker, against the emulator, on a SQLite file or PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.queue import FINAL_STATES
from dbt_tableau_relay.samples import post_event
from dbt_tableau_relay.store import RefreshJob, Store

SECRET = "relay-test-secret"
PAT_NAME, PAT_SECRET = "relay-pat", "relay-pat-secret"
ADMIN = ("admin", "admin-password")
EXEC = "Sales/Executive Overview"

RULES = [
    {"name": "sales", "on": {"job_id": 101}, "refresh": [{"workbook": EXEC}]},
    {
        "name": "finance",
        "on": {"job_id": [202, "203"]},
        "refresh": [{"datasource": "Finance/Revenue"}, {"workbook": "Finance/Executive Overview"}],
    },
    {
        "name": "finance-again",
        "on": {"job_id": 202},
        "refresh": [{"datasource": "Finance/Revenue"}],
    },
    {"name": "ledger", "on": {"job_id": 303}, "refresh": [{"datasource": "Finance/Legacy Ledger"}]},
    {"name": "live", "on": {"job_id": 404}, "refresh": [{"datasource": "Sales/Live Inventory"}]},
    {
        "name": "on-error",
        "on": {"event": "job.run.errored", "status": "error", "job_id": 505},
        "refresh": [{"workbook": "Marketing/Campaign Performance"}],
    },
]


@dataclass
class Relay:
    url: str
    tableau: Emulator
    store: Store

    def post(self, body: bytes) -> dict[str, Any]:
        answer = post_event(f"{self.url}/webhooks/dbt", body, SECRET)
        return {**answer.json(), "http": answer.status_code}

    def jobs(self) -> list[RefreshJob]:
        return sorted(self.store.list_jobs(limit=500), key=lambda j: j.id)

    def settled_jobs(self, timeout: float = 30.0) -> list[RefreshJob]:
        """Every job, once each has reached a final state."""
        wait_until(
            lambda: self.jobs() and all(j.state in FINAL_STATES for j in self.jobs()), timeout
        )
        return self.jobs()


def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def relay_settings(tableau_url: str, database_url: str, **worker: object) -> Settings:
    return Settings.model_validate(
        {
            "database_url": database_url,
            "dbt": {"webhook_secrets": [SECRET]},
            "tableau": {
                "server_url": tableau_url,
                "site": "marketing",
                "token_name": PAT_NAME,
                "token_secret": PAT_SECRET,
                "request_timeout": 2.0,
            },
            "rules": RULES,
            "worker": {
                "poll_interval": 0.1,
                "retry_base_seconds": 0.05,
                "busy_retry_seconds": 0.3,
                "max_attempts": 4,
            }
            | worker,
        }
    )
