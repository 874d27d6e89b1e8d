"""A relay with chosen admin settings (token, listen address), for the admin surface's tests.

The relay always serves on 127.0.0.1; `listen` only tells it what it was
configured with, which is what the access rule reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import harness
import httpx
from harness import Relay
from pydantic import SecretStr

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.lineage.explain import to_json
from dbt_tableau_relay.lineage.model import Decision, NodeVerdict, TableauItem
from dbt_tableau_relay.runs import LineageJob, LineageJobEvent
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.store import Event, RefreshJob, RefreshJobEvent, Store, utcnow

TOKEN = "admin-token-for-tests-7f3a"
LEGACY_LEDGER = "Finance/Legacy Ledger"  # fails in the emulator: "Login failed"


@contextmanager
def emulator() -> Iterator[Emulator]:
    with Emulator(
        site="marketing",
        pat_name=harness.PAT_NAME,
        pat_secret=harness.PAT_SECRET,
        job_duration=0.3,
    ) as tableau:
        yield tableau


@contextmanager
def admin_relay(
    tableau: Emulator,
    database_url: str,
    *,
    token: str | None = None,
    listen: str = "127.0.0.1:8080",
    worker: bool = True,
) -> Iterator[Relay]:
    """The relay against `tableau`, with or without its worker."""
    settings = harness.relay_settings(tableau.url, database_url).model_copy(
        update={"admin_token": SecretStr(token) if token else None, "listen": listen}
    )
    app = relay_app(settings) if worker else create_app(settings)
    with ExitStack() as stack:
        running = stack.enter_context(serve_in_thread(app))
        store = Store(database_url)
        stack.callback(store.dispose)
        yield Relay(running.url, tableau, store)


def client(relay: Relay, token: str | None = None, **options: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=relay.url, headers=headers, timeout=10, **options)


# -- a lineage-driven run, written into the store as the worker leaves it -------

REVENUE = TableauItem("workbook", "0c9d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f", "Revenue", "Finance")
HEALTH = TableauItem("workbook", "3f1c9a52-7d2e-4b8a-9c61-0e5d4b7a2f10", "Pipeline Health", "Sales")


def lineage_decisions() -> list[Decision]:
    """Revenue refreshed (its model rebuilt), Pipeline Health skipped (a model errored)."""
    node = NodeVerdict
    return [
        Decision(
            REVENUE,
            "refresh",
            (node("model.shop.orders", "success"),),
            "exposures",
            "a node it depends on was rebuilt and none errored",
        ),
        Decision(
            HEALTH,
            "skip",
            (node("model.shop.revenue_daily", "error"), node("model.shop.stg_orders", "success")),
            "exposures",
            "a node it depends on errored: revenue_daily",
        ),
    ]


@dataclass(frozen=True)
class SeededRun:
    run_id: str
    event_pk: int
    lineage_job_id: int
    refresh_job_id: int


def seed_lineage_run(store: Store, run_id: str = "70001", dbt_job_id: str = "404") -> SeededRun:
    """An event, its lineage job (done, with its decisions) and the refresh it made (failed)."""
    now = utcnow()
    decisions = lineage_decisions()
    with store.session() as session:
        event = Event(
            event_id=f"wev_lineage_{run_id}",
            event_type="job.run.completed",
            account_id="1",
            job_id=dbt_job_id,
            run_id=run_id,
            run_status_code=10,
            outcome="queued",
            body="{}",
            received_at=now,
            refreshes=1,
        )
        lineage = LineageJob(
            run_id=run_id,
            account_id="1",
            dbt_job_id=dbt_job_id,
            rule_name="lineage",
            sources="exposures,tableau_lineage",
            wait=True,
            incremental=False,
            state="done",
            attempts=1,
            not_before=now,
            explanation=json.dumps(to_json(decisions)),
            created_at=now,
            updated_at=now,
            finished_at=now,
            last_event_at=now,
        )
        refresh = RefreshJob(
            target_kind="workbook",
            target_by="luid",
            target_ref=REVENUE.luid,
            target_key=f"workbook:luid:{REVENUE.luid}",
            rule_name="lineage",
            incremental=False,
            wait=True,
            state="failed",
            attempts=1,
            not_before=now,
            finish_code=1,
            error_code="finishCode 1",
            error="Login failed for the extract's connection",
            created_at=now,
            updated_at=now,
            finished_at=now,
            last_event_at=now,
            explanation=json.dumps(to_json(decisions[:1])[0]),
        )
        session.add_all([event, lineage, refresh])
        session.flush()
        session.add(LineageJobEvent(lineage_job_id=lineage.id, event_pk=event.id))
        session.add(RefreshJobEvent(refresh_job_id=refresh.id, event_pk=event.id))
        return SeededRun(run_id, event.id, lineage.id, refresh.id)
