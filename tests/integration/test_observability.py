"""/metrics and the logs, over real HTTP and real databases.

- the store's gauges (jobs by state, oldest queued, pending notifications)
  are read at scrape time, so every replica reports the same;
- refresh outcomes are counted where the transition commits;
- every Tableau call is timed by endpoint and status class;
- one grep of a dbt run id follows the run from its webhook to Tableau's verdict.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from harness import EXEC, Relay, relay_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.config import Rule, TableauSettings, Target
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.errors import AlreadyQueuedError, NotFoundError, TransientTableauError
from dbt_tableau_relay.events import parse_event
from dbt_tableau_relay.logs import KeyValueFormatter
from dbt_tableau_relay.queue import ClaimedJob, RefreshQueue
from dbt_tableau_relay.recorder import Submission, write_batch
from dbt_tableau_relay.rules import match
from dbt_tableau_relay.samples import sample_event
from dbt_tableau_relay.service import serve_in_thread
from dbt_tableau_relay.store import JOB_STATES, RefreshJob, Store, utcnow
from dbt_tableau_relay.tableau import TableauClient

RULES = [
    Rule.model_validate({"name": "exec", "on": {"job_id": 1}, "refresh": [{"workbook": "S/Exec"}]}),
    Rule.model_validate({"name": "rev", "on": {"job_id": 2}, "refresh": [{"datasource": "F/Rev"}]}),
]


def gauges(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page: (name, labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def jobs_by_state(text: str) -> dict[str, float]:
    found = gauges(text)
    return {dict(k[1])["state"]: v for k, v in found.items() if k[0] == "relay_refresh_jobs"}


def record(store: Store, dbt_job: int = 1) -> None:
    body = sample_event(job_id=dbt_job)
    event = parse_event(body)
    with store.transaction() as conn:
        write_batch(conn, [Submission(body, utcnow(), event, match(RULES, event))])


DEPLOY = Path(__file__).parents[2] / "deploy"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the store's gauges -------------------------------------------------------------


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Store, list[str]]]:
    """Two relays (no worker) on one SQLite database, and a store to write to it."""
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    settings = relay_settings("http://127.0.0.1:9", url)
    with ExitStack() as stack:
        urls = [stack.enter_context(serve_in_thread(create_app(settings))).url for _ in range(2)]
        store = Store(url)
        stack.callback(store.dispose)
        yield store, urls


def test_every_job_state_shows_with_zeros_on_an_empty_store(
    replicas: tuple[Store, list[str]],
) -> None:
    _, urls = replicas
    text = httpx.get(f"{urls[0]}/metrics").text
    assert jobs_by_state(text) == dict.fromkeys(JOB_STATES, 0.0)
    assert gauges(text)[("relay_oldest_queued_seconds", ())] == 0.0
    assert gauges(text)[("relay_notifications_pending", ())] == 0.0


def test_every_replica_reports_what_the_store_holds(replicas: tuple[Store, list[str]]) -> None:
    store, urls = replicas
    record(store, 1)
    record(store, 2)
    with store.session() as session:  # the first job was queued ten minutes ago
        session.execute(
            update(RefreshJob)
            .where(RefreshJob.id == 1)
            .values(created_at=utcnow() - timedelta(minutes=10))
        )
    first, second = (httpx.get(f"{u}/metrics").text for u in urls)
    assert (
        jobs_by_state(first)
        == jobs_by_state(second)
        == dict.fromkeys(JOB_STATES, 0.0) | {"queued": 2.0}
    )
    assert 600 <= gauges(second)[("relay_oldest_queued_seconds", ())] < 700


def test_the_webhook_counters_are_still_served(replicas: tuple[Store, list[str]]) -> None:
    _, urls = replicas
    text = httpx.get(f"{urls[0]}/metrics").text
    assert 'relay_webhooks_total{outcome="accepted"}' in text
    assert 'relay_refreshes_total{outcome="merged"}' in text


def deployed_queries() -> list[str]:
    """Every PromQL expression of the example alert rules and the Grafana dashboard."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    dashboard = json.loads((DEPLOY / "grafana" / "dbt-tableau-relay.json").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]] + [
        t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])
    ]


def test_the_alerts_and_the_dashboard_ask_only_for_metrics_the_relay_serves(
    replicas: tuple[Store, list[str]],
) -> None:
    _, urls = replicas
    families = text_string_to_metric_families(httpx.get(f"{urls[0]}/metrics").text)
    served = {f.name + suffix for f in families for suffix in SUFFIXES.get(f.type, ("",))}
    asked = {name for q in deployed_queries() for name in re.findall(r"\brelay_[a-z_]+", q)}
    assert len(asked) >= 8
    assert asked <= served, asked - served


# -- refresh outcomes ------------------------------------------------------------------


def claimed(queue: RefreshQueue) -> ClaimedJob:
    [job] = queue.claim(1)
    return job


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "dead", "merged"])
def test_each_refresh_outcome_is_counted_once_committed(store: Store, outcome: str) -> None:
    queue = RefreshQueue(store, "worker-a")
    record(store)
    job = claimed(queue)
    before = sample("relay_refreshes_total", outcome=outcome)
    if outcome == "succeeded":
        queue.sent(job, "tj-1", "luid-1", first_poll=0.0)
        queue.finished(claimed(queue), 0, None, succeeded=True)
    elif outcome == "merged":
        record(store)  # a new queued job of the item: the retried one joins it
        queue.retry_later(job, 0.0, TransientTableauError("Tableau 503", status=503), "transient")
    else:
        (queue.fail if outcome == "failed" else queue.dead)(job, "refused")
    assert sample("relay_refreshes_total", outcome=outcome) - before == 1


def test_a_transition_lost_with_its_lease_is_not_counted(store: Store) -> None:
    queue = RefreshQueue(store, "worker-a")
    record(store)
    job = claimed(queue)
    with store.session() as session:
        session.execute(update(RefreshJob).values(claimed_by="worker-b"))
    before = sample("relay_refreshes_total", outcome="failed")
    queue.fail(job, "too late")
    assert sample("relay_refreshes_total", outcome="failed") == before


# -- Tableau's latency ------------------------------------------------------------------


@pytest.fixture
def tableau(emulator: Emulator, pat: tuple[str, str]) -> Iterator[TableauClient]:
    settings = TableauSettings.model_validate(
        {
            "server_url": emulator.url,
            "site": "marketing",
            "token_name": pat[0],
            "token_secret": pat[1],
            "request_timeout": 2.0,
        }
    )
    with TableauClient(settings, sleep=lambda _: None) as client:
        yield client


def counted(endpoint: str, status: str) -> float:
    return sample("relay_tableau_request_seconds_count", endpoint=endpoint, status=status)


def delta(action: Callable[[], object], endpoint: str, status: str) -> float:
    before = counted(endpoint, status)
    with suppress(AlreadyQueuedError, NotFoundError, TransientTableauError):
        action()
    return counted(endpoint, status) - before


def test_tableau_calls_are_timed_by_endpoint_and_status(
    emulator: Emulator, tableau: TableauClient
) -> None:
    target = Target(workbook=EXEC)
    assert delta(tableau.connect, "signin", "2xx") == 1
    assert delta(lambda: tableau.resolve(target), "list", "2xx") == 2  # projects, then workbooks
    item, job = tableau.refresh(target)
    assert delta(lambda: tableau.job(job.id), "job", "2xx") == 1
    assert delta(lambda: tableau.refresh_item(item), "refresh", "4xx") == 1  # 409093
    missing = Target(workbook_id="00000000-0000-4000-8000-000000000000")
    assert delta(lambda: tableau.resolve(missing), "item", "4xx") == 1
    emulator.faults.fail(count=1, status=503)
    assert delta(lambda: tableau.items("workbook"), "list", "5xx") == 1
    emulator.faults.drop(count=1)
    assert delta(lambda: tableau.items("workbook"), "list", "error") == 1


# -- one grep follows a run ---------------------------------------------------------------


def test_one_grep_of_a_run_id_follows_it_from_webhook_to_tableaus_verdict(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = "70403117"
    with caplog.at_level(logging.DEBUG, logger="dbt_tableau_relay"):
        relay.post(sample_event(job_id=101, run_id=run_id))
        [job] = relay.settled_jobs()
    assert job.state == "succeeded"
    formatter = KeyValueFormatter()
    grepped = [line for r in caplog.records if run_id in (line := formatter.format(r))]
    names = [line.split()[2] for line in grepped]
    for name in ("webhook.accepted", "recorder.batch", "refresh.sent", "refresh.succeeded"):
        assert name in names, grepped
    [webhook_line] = [line for line in grepped if "webhook.accepted" in line]
    assert "dbt_job=101" in webhook_line
    assert "event_id=wev_" in webhook_line
    assert f"runs={run_id}" in next(line for line in grepped if "refresh.succeeded" in line)
