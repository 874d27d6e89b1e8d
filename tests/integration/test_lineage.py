"""Lineage end to end: a dbt run's artifacts and Tableau's lineage decide what is refreshed.

Both emulators over real HTTP, the real artifacts of tests/fixtures/dbt-artifacts
(a `dbt build` then a trailing `dbt docs generate`, whose run_results call
every node a success without building anything).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from harness import PAT_NAME, PAT_SECRET, wait_until
from lineage_harness import (
    JOB,
    LineageRelay,
    build_then_docs,
    emulators,
    lineage_rules,
    running,
    settings_for,
)

from dbt_tableau_relay.demo_lineage import CUSTOMER_360, PIPELINE_HEALTH
from dbt_tableau_relay.demo_lineage import LINEAGE_SITE as SITE
from dbt_tableau_relay.emulators.dbt_cloud import DbtCloudEmulator
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.runs import lineage_jobs_of_run
from dbt_tableau_relay.samples import sample_event
from support import run_cli


@pytest.fixture
def sites() -> Iterator[tuple[Emulator, DbtCloudEmulator]]:
    with emulators() as pair:
        yield pair


def refreshed_paths(relay: LineageRelay) -> set[str]:
    """Project/Name of every item of the site Tableau was asked to refresh."""
    by_luid = {
        relay.tableau.luid(kind, item["path"]): item["path"]
        for kind in ("workbook", "datasource")
        for item in SITE[f"{kind}s"]
    }
    return {by_luid[r.item_id] for r in relay.tableau.refresh_posts() if r.item_id}


def settle(relay: LineageRelay, run_id: str) -> list[dict[str, object]]:
    """The run's decisions, once its lineage job is done and every refresh has ended."""
    wait_until(lambda: [j.state for j in lineage_jobs_of_run(relay.store, run_id)] == ["done"], 60)
    [job] = lineage_jobs_of_run(relay.store, run_id)
    if any(d["action"] == "refresh" for d in json.loads(job.explanation or "[]")):
        relay.settled_jobs(60)
    return list(json.loads(job.explanation or "[]"))


def test_a_failing_run_refreshes_only_what_its_rebuilt_models_feed(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    run_id = cloud.add_run(job_id=JOB, status=20, steps=build_then_docs("failing"))
    with running(tableau, cloud, f"sqlite:///{tmp_path / 'relay.db'}") as relay:
        answer = relay.post(
            sample_event("completed", job_id=JOB, run_id=run_id, run_status_code=20)
        )
        assert (answer["http"], answer["lineage_queued"]) == (202, 1)
        decisions = {d["path"]: d for d in settle(relay, str(run_id))}
        refreshed = refreshed_paths(relay)
    # revenue_daily errored: what reads it is skipped, by exposure and by Tableau's lineage.
    assert decisions["Sales/Pipeline Health"]["action"] == "skip"
    assert decisions["Ops/Daily Revenue"]["action"] == "skip"
    # customers was skipped (not errored) and orders rebuilt: refreshed.
    assert decisions["Sales/Customer 360"]["action"] == "refresh"
    assert decisions["Finance/Finance Revenue"]["action"] == "refresh"  # found by its URL
    assert decisions["Ops/Orders Extract"]["action"] == "refresh"  # Tableau's lineage
    # Live connections and workbooks on a published source are never candidates.
    assert "Ops/Orders Live" not in decisions
    assert "Ops/Orders Board" not in decisions
    assert refreshed == {"Sales/Customer 360", "Finance/Finance Revenue", "Ops/Orders Extract"}


def test_the_build_steps_artifacts_are_read_not_the_docs_steps(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    run_id = cloud.add_run(job_id=JOB, status=20, steps=build_then_docs("failing"))
    with running(tableau, cloud, f"sqlite:///{tmp_path / 'relay.db'}") as relay:
        relay.post(sample_event("completed", job_id=JOB, run_id=run_id, run_status_code=20))
        settle(relay, str(run_id))
    asked = {
        (r.path.rsplit("/", 1)[-1], r.query.get("step")) for r in cloud.artifact_requests(run_id)
    }
    assert asked == {("run_results.json", "1"), ("manifest.json", "1")}


def test_a_green_run_refreshes_every_exposure_once(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    run_id = cloud.add_run(job_id=JOB, steps=build_then_docs("green"))
    rules = lineage_rules("exposures")
    with running(tableau, cloud, f"sqlite:///{tmp_path / 'relay.db'}", rules=rules) as relay:
        relay.post(sample_event("completed", job_id=JOB, run_id=run_id))
        decisions = settle(relay, str(run_id))
        jobs = relay.settled_jobs()
    assert sorted(d["path"] for d in decisions if d["action"] == "refresh") == [
        "Finance/Finance Revenue",
        "Sales/Customer 360",
        "Sales/Pipeline Health",
    ]
    assert sorted(
        j.item_luid or "" for j in jobs if j.item_luid in (PIPELINE_HEALTH, CUSTOMER_360)
    ) == sorted([PIPELINE_HEALTH, CUSTOMER_360])
    assert all(j.explanation for j in jobs)  # each refresh carries the decision behind it
    assert len(tableau.refresh_posts()) == 3


def test_the_webhook_is_answered_before_any_lineage_call(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    """The event is recorded and acknowledged at once; the worker does the lineage later."""
    tableau, cloud = sites
    run_id = cloud.add_run(job_id=JOB, steps=build_then_docs("green"))
    cloud.faults.latency = 1.0  # every Admin API call takes a second
    with running(tableau, cloud, f"sqlite:///{tmp_path / 'relay.db'}") as relay:
        answer = relay.post(sample_event("completed", job_id=JOB, run_id=run_id))
        assert answer["status"] == "queued"
        assert [j.state for j in lineage_jobs_of_run(relay.store, str(run_id))] in (
            ["queued"],
            ["resolving"],
        )
        cloud.faults.latency = 0.0
        settle(relay, str(run_id))


def test_artifacts_not_yet_readable_are_waited_for(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    """dbt's `errored` event comes before the artifacts are ingested: 404s, then served."""
    tableau, cloud = sites
    cloud.artifact_delay = 1.5
    run_id = cloud.add_run(job_id=JOB, status=20, steps=build_then_docs("failing"))
    with running(tableau, cloud, f"sqlite:///{tmp_path / 'relay.db'}") as relay:
        relay.post(sample_event("completed", job_id=JOB, run_id=run_id, run_status_code=20))
        decisions = settle(relay, str(run_id))
    assert {d["path"] for d in decisions if d["action"] == "refresh"} >= {"Sales/Customer 360"}
    assert any(r.status == 404 for r in cloud.artifact_requests(run_id))


def test_a_second_event_of_the_run_makes_no_second_lineage_job(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    run_id = cloud.add_run(job_id=JOB, status=20, steps=build_then_docs("failing"))
    with running(tableau, cloud, f"sqlite:///{tmp_path / 'relay.db'}") as relay:
        relay.post(sample_event("errored", job_id=JOB, run_id=run_id))
        relay.post(sample_event("completed", job_id=JOB, run_id=run_id, run_status_code=20))
        settle(relay, str(run_id))
        assert len(lineage_jobs_of_run(relay.store, str(run_id))) == 1


def write_config(path: Path, settings_doc: dict[str, object]) -> Path:
    config = path / "relay.yml"
    config.write_text(json.dumps(settings_doc))  # JSON is YAML
    return config


def config_doc(tableau: Emulator, cloud: DbtCloudEmulator, database_url: str) -> dict[str, object]:
    settings = settings_for(tableau, cloud, database_url)
    doc = settings.model_dump(mode="json", exclude_none=True)
    doc["dbt"] = {
        "webhook_secrets": ["s"],
        "cloud": {
            "access_url": cloud.url,
            "account_id": cloud.account_id,
            "api_token": cloud.token,
        },
    }
    doc["tableau"] = {
        "server_url": tableau.url,
        "site": "marketing",
        "token_name": PAT_NAME,
        "token_secret": PAT_SECRET,
    }
    return doc


def test_explain_prints_the_workers_decisions_for_a_run(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    database_url = f"sqlite:///{tmp_path / 'relay.db'}"
    run_id = cloud.add_run(job_id=JOB, status=20, steps=build_then_docs("failing"))
    with running(tableau, cloud, database_url) as relay:
        relay.post(sample_event("completed", job_id=JOB, run_id=run_id, run_status_code=20))
        settle(relay, str(run_id))
    config = write_config(tmp_path, config_doc(tableau, cloud, database_url))
    text = run_cli("--config", str(config), "explain", "--run", str(run_id))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any(
        line.startswith("skip")
        and "Sales/Pipeline Health" in line
        and "revenue_daily: error" in line
        for line in lines
    ), lines
    assert any(line.startswith("refresh") and "Ops/Orders Extract" in line for line in lines)
    as_json = run_cli("--config", str(config), "explain", "--run", str(run_id), "--json")
    decisions = {d["path"]: d for d in json.loads(as_json.stdout)["decisions"]}
    assert decisions["Sales/Customer 360"]["action"] == "refresh"
    nodes = {n["name"]: n["status"] for n in decisions["Sales/Customer 360"]["nodes"]}
    assert (nodes["customers"], nodes["orders"]) == ("skipped", "success")


def test_explain_decides_live_for_a_run_the_relay_never_saw(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    run_id = cloud.add_run(job_id=JOB, steps=build_then_docs("green"))
    config = write_config(
        tmp_path, config_doc(tableau, cloud, f"sqlite:///{tmp_path / 'empty.db'}")
    )
    text = run_cli("--config", str(config), "explain", "--run", str(run_id))
    assert text.returncode == 0, text.stderr
    assert [line.split()[0] for line in text.stdout.splitlines()].count("refresh") >= 3
    assert tableau.refresh_posts() == []  # explaining refreshes nothing


def test_explain_names_a_run_no_lineage_rule_matches(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    run_id = cloud.add_run(job_id=999, steps=build_then_docs("green"))
    config = write_config(
        tmp_path, config_doc(tableau, cloud, f"sqlite:///{tmp_path / 'empty.db'}")
    )
    text = run_cli("--config", str(config), "explain", "--run", str(run_id))
    assert text.returncode == 1
    assert f"no lineage rule matches dbt run {run_id}" in text.stderr


def test_the_admin_api_shows_a_runs_decisions_and_each_jobs_reason(
    sites: tuple[Emulator, DbtCloudEmulator], tmp_path: Path
) -> None:
    tableau, cloud = sites
    run_id = cloud.add_run(job_id=JOB, status=20, steps=build_then_docs("failing"))
    with running(tableau, cloud, f"sqlite:///{tmp_path / 'relay.db'}") as relay:
        relay.post(sample_event("completed", job_id=JOB, run_id=run_id, run_status_code=20))
        settle(relay, str(run_id))
        story = requests.get(f"{relay.url}/api/runs/{run_id}", timeout=5).json()
        [lineage] = story["lineage"]
        skipped = {d["path"] for d in lineage["decisions"] if d["action"] == "skip"}
        assert skipped == {"Sales/Pipeline Health", "Ops/Daily Revenue"}
        assert len(story["jobs"]) == 3
        job = requests.get(f"{relay.url}/api/jobs/{story['jobs'][0]['id']}", timeout=5).json()
        assert job["explanation"]["action"] == "refresh"
        assert job["explanation"]["nodes"]
        unknown = requests.get(f"{relay.url}/api/runs/424242", timeout=5)
        assert unknown.status_code == 404
