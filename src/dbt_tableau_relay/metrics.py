"""Prometheus metrics about refreshes, Tableau and notifications (docs/observability.md).

Two kinds, for two reasons:
- counters and histograms of what this process did, where it did it:
  `relay_refreshes_total{outcome}` (queue.py, at each committed transition),
  `relay_tableau_request_seconds{endpoint,status}` (tableau.py, every call),
  `relay_notifications_total{outcome}` (notifier.py, every delivery);
- gauges of what the store holds, read from it at scrape time
  (`StoreCollector`): `relay_refresh_jobs{state}`, every state, zeros
  included, `relay_oldest_queued_seconds` and `relay_notifications_pending`.
  Read at scrape time they are right on every replica, whichever one did
  the work; aggregate them across replicas with `max`, not `sum`.

The webhook's own metrics stay in webhooks.py and recorder.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from dbt_tableau_relay.errors import TableauError
from dbt_tableau_relay.notifications import Notification
from dbt_tableau_relay.states import FINAL_STATES, JOB_STATES, JobState
from dbt_tableau_relay.store import RefreshJob, Store, utcnow

log = logging.getLogger(__name__)

REFRESH_OUTCOMES: Final = FINAL_STATES
REFRESHES = Counter(
    "relay_refreshes", "Refresh jobs that reached a final state, by outcome.", ["outcome"]
)
for _state in REFRESH_OUTCOMES:
    REFRESHES.labels(_state)  # each outcome shows from the start, at 0

# Tableau calls by what they do; one relay call is one observation (a paged listing too).
Endpoint = Literal[
    "signin", "list", "item", "refresh", "job", "jobs", "cancel", "metadata", "other"
]
TABLEAU_SECONDS = Histogram(
    "relay_tableau_request_seconds",
    "Time of each call to Tableau, by endpoint and status class (2xx, 4xx, 5xx, error).",
    ["endpoint", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

NOTIFICATION_OUTCOMES: Final = ("sent", "retried", "failed", "dropped")
NOTIFICATIONS = Counter(
    "relay_notifications",
    "Notification deliveries, by outcome: sent, retried (will try again), failed (gave up), "
    "dropped (channel no longer configured).",
    ["outcome"],
)
for _outcome in NOTIFICATION_OUTCOMES:
    NOTIFICATIONS.labels(_outcome)

SCRAPE_TIMEOUT: Final = 5.0  # seconds for the store's gauges; without them /metrics still answers


def status_class(error: TableauError | None) -> str:
    """`2xx` for an answer, `4xx`/`5xx` for Tableau's refusals, `error` when none came."""
    if error is None:
        return "2xx"
    if error.status is None:
        return "error"  # a timeout, a dropped connection, an unreadable answer
    return f"{error.status // 100}xx"


def observe_tableau(endpoint: str, seconds: float, error: TableauError | None = None) -> None:
    TABLEAU_SECONDS.labels(endpoint, status_class(error)).observe(seconds)


# -- read from the store at scrape time -----------------------------------------------


class StoreCollector:
    """The store's gauges, read at each scrape: three small queries on indexed columns."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts, oldest, pending = read_gauges(self.store)
        jobs = GaugeMetricFamily(
            "relay_refresh_jobs", "Refresh jobs in the store, by state.", labels=["state"]
        )
        for state in JOB_STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "relay_oldest_queued_seconds",
            "Age of the oldest queued refresh job (0 when none is queued).",
            value=max(0.0, age),
        )
        yield GaugeMetricFamily(
            "relay_notifications_pending",
            "Notifications not yet delivered (retries included).",
            value=pending,
        )


def read_gauges(store: Store) -> tuple[dict[str, int], datetime | None, int]:
    """Jobs per state, the oldest queued job's creation time, and pending notifications."""
    rj, note = RefreshJob, Notification
    counts = select(rj.state, func.count()).group_by(rj.state)
    oldest = select(func.min(rj.created_at)).where(rj.state == JobState.QUEUED)
    pending = select(func.count()).select_from(note).where(note.state == "pending")
    with store.session(readonly=True) as session:
        found: dict[str, int] = dict(session.execute(counts).all())
        return found, session.scalar(oldest), session.scalar(pending) or 0


def store_exposition(store: Store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return generate_latest(registry)


async def store_metrics(store: Store) -> bytes:
    """The store's gauges in the text format; nothing (logged) if the store does not answer."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(store_exposition, store), SCRAPE_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - the process's own metrics are still worth serving
        log.warning("metrics.store_failed", extra={"error": repr(exc)})
        return b""
