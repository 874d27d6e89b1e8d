"""Reconciliation: a run that finished while the relay was down is processed once, anyway.

Both emulators over real HTTP; the relay is stopped, a run finishes, the
relay starts again and finds the run through the Admin API's runs list.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import wait_until
from lineage_harness import JOB, build_then_docs, emulators, lineage_rules, running

from dbt_tableau_relay.config import DbtCloudSettings, Rule
from dbt_tableau_relay.dbt_cloud import DbtCloudClient
from dbt_tableau_relay.emulators.dbt_cloud import DbtCloudEmulator
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.reconcile import CURSOR, Reconciler, scopes
from dbt_tableau_relay.runs import lineage_jobs_of_run, read_state
from dbt_tableau_relay.samples import sample_event
from dbt_tableau_relay.store import Event, Store

EVERY = 0.3  # seconds between polls of the Admin API


@pytest.fixture
def sites() -> Iterator[tuple[Emulator, DbtCloudEmulator]]:
    with emulators() as pair:
        yield pair


def events_of(store: Store, run_id: int) -> list[Event]:
    return [e for e in store.list_events(limit=500) if e.run_id == str(run_id)]


def test_a_run_finished_while_the_relay_was_down_is_refreshed_once(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    database_url = f"sqlite:///{tmp_path / 'relay.db'}"
    before = datetime.now(UTC) - timedelta(hours=1)
    old = cloud.add_run(job_id=JOB, steps=build_then_docs("green"), finished_at=before)
    with running(tableau, cloud, database_url, reconcile_seconds=EVERY) as relay:
        wait_until(lambda: read_state(relay.store, CURSOR) is not None)  # first start: "now"
    missed = cloud.add_run(job_id=JOB, steps=build_then_docs("green"))  # the relay is down
    exposures = lineage_rules("exposures")
    with running(tableau, cloud, database_url, reconcile_seconds=EVERY, rules=exposures) as relay:
        wait_until(lambda: lineage_jobs_of_run(relay.store, str(missed)), 30)
        [event] = events_of(relay.store, missed)
        assert (event.event_id, event.outcome) == (f"reconciled:{missed}:completed", "queued")
        jobs = relay.settled_jobs(60)
        assert len(tableau.refresh_posts()) == 3  # the three exposures' items, once each
        # dbt's own webhook turns up late: the run is already processed.
        late = relay.post(sample_event("completed", job_id=JOB, run_id=missed))
        assert (late["http"], late["status"]) == (200, "duplicate")
        time.sleep(3 * EVERY)  # a few more cycles: they find nothing new
        assert [j.id for j in relay.settled_jobs()] == [j.id for j in jobs]
        assert len(tableau.refresh_posts()) == 3
        assert events_of(relay.store, old) == []  # older than the first start: not replayed


def test_a_run_whose_webhook_came_is_not_reconciled(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    database_url = f"sqlite:///{tmp_path / 'relay.db'}"
    with running(tableau, cloud, database_url, reconcile_seconds=EVERY) as relay:
        wait_until(lambda: read_state(relay.store, CURSOR) is not None)
        run_id = cloud.add_run(job_id=JOB, steps=build_then_docs("green"))
        relay.post(sample_event("completed", job_id=JOB, run_id=run_id))
        wait_until(lambda: lineage_jobs_of_run(relay.store, str(run_id)), 30)
        time.sleep(3 * EVERY)
        assert [e.event_id.startswith("reconciled") for e in events_of(relay.store, run_id)] == [
            False
        ]
        assert len(lineage_jobs_of_run(relay.store, str(run_id))) == 1


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_several_replicas_reconcile_once(
    sites: tuple[Emulator, DbtCloudEmulator],
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """Each replica polls; the one holding the `reconcile` lease records, the others skip."""
    _, cloud = sites
    url = (
        f"sqlite:///{tmp_path / 'relay.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    store = Store(url)
    store.migrate()
    rules = [
        Rule.model_validate({"name": "r", "on": {"job_id": JOB}, "refresh": [{"workbook": "A/B"}]})
    ]
    settings = _cloud_settings(cloud)
    with DbtCloudClient(settings) as client:
        replicas = [
            Reconciler(store, client, rules, every=60, holder=f"replica-{n}") for n in range(3)
        ]
        assert [r.run_once() for r in replicas] == [[], [], []]  # the first start: a cursor
        missed = cloud.add_run(job_id=JOB, steps=build_then_docs("green"))
        recorded = [r.run_once() for r in replicas]
    assert recorded == [[str(missed)], [], []]
    assert len(events_of(store, missed)) == 1
    store.dispose()


def _cloud_settings(cloud: DbtCloudEmulator):  # type: ignore[no-untyped-def]

    return DbtCloudSettings(
        access_url=cloud.url, account_id=cloud.account_id, api_token=cloud.token
    )


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([{"on": {"job_id": [1, 2]}}], [(("job_id", "1"),), (("job_id", "2"),)]),
        ([{"on": {"environment_id": 7}}], [(("environment_id", "7"),)]),
        ([{"on": {"job_id": 1}}, {"on": {}}], [()]),  # a rule on every run: one list
        ([{"on": {"event": "job.run.started", "job_id": 1}}], []),  # started: nothing to do
    ],
)
def test_scopes_list_each_watched_job_once(
    rules: list[dict[str, object]], expected: object
) -> None:
    parsed = [
        Rule.model_validate({"name": f"r{i}", "refresh": [{"workbook": "A/B"}], **r})
        for i, r in enumerate(rules)
    ]
    assert scopes(parsed) == expected
