"""`dbt-tableau-relay replay` as a user runs it: on the database a real run left, no server up.

A relay (with its worker, against the emulator) runs in this process from the
same relay.yml until its jobs have Tableau's verdict, and stops; then the CLI
runs as a subprocess on that database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dbt_tableau_relay.config import load_settings
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.queue import FINAL_STATES
from dbt_tableau_relay.samples import post_event, sample_event
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.store import RefreshJob, Store

SECRET = "replay-webhook-secret"
PAT_NAME, PAT_SECRET = "replay-pat", "replay-pat-secret"
LEDGER = "Finance/Legacy Ledger"  # its refreshes fail in the emulator


@pytest.fixture
def tableau() -> Iterator[Emulator]:
    with Emulator(
        site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.2
    ) as emu:
        yield emu


@pytest.fixture
def config(tmp_path: Path, tableau: Emulator) -> Path:
    path = tmp_path / "relay.yml"
    path.write_text(
        f"""
database_url: sqlite:///{tmp_path / "relay.db"}
dbt: {{webhook_secrets: [{SECRET}]}}
tableau: {{server_url: "{tableau.url}", site: marketing, token_name: {PAT_NAME},
           token_secret: {PAT_SECRET}, request_timeout: 2}}
rules:
  - {{name: sales, on: {{job_id: 101}}, refresh: [{{workbook: Sales/Executive Overview}}]}}
  - {{name: ledger, on: {{job_id: 303}}, refresh: [{{datasource: {LEDGER}}}]}}
worker: {{poll_interval: 0.1, retry_base_seconds: 0.05, max_attempts: 2}}
"""
    )
    return path


Run = Callable[..., list[RefreshJob]]


@pytest.fixture
def run(config: Path) -> Iterator[Run]:
    """Run the relay on relay.yml: post events for `job_ids`, wait for every verdict, stop."""
    settings = load_settings(config)
    store = Store(settings.database_url)

    def run_relay(*job_ids: int) -> list[RefreshJob]:
        with serve_in_thread(relay_app(settings)) as server:
            for job_id in job_ids:
                post_event(f"{server.url}/webhooks/dbt", sample_event(job_id=job_id), SECRET)
            return settled(store)

    yield run_relay
    store.dispose()


def settled(store: Store, timeout: float = 30) -> list[RefreshJob]:
    deadline = time.monotonic() + timeout
    while not (jobs := store.list_jobs()) or any(j.state not in FINAL_STATES for j in jobs):
        assert time.monotonic() < deadline, [(j.id, j.state) for j in jobs]
        time.sleep(0.05)
    return sorted(jobs, key=lambda j: j.id)


def replay(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbt_tableau_relay", "--config", str(config), "replay", *args],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=60,
        check=False,
    )


def test_replay_prints_old_and_new_id_and_the_next_run_refreshes(
    config: Path, run: Run, tableau: Emulator
) -> None:
    [failed] = run(303)
    assert failed.state == "failed"
    result = replay(config, str(failed.id))
    assert result.returncode == 0, result.stderr
    new_id = failed.id + 1
    assert result.stdout == f"{failed.id} -> {new_id}\n"
    tableau.set_refresh_outcome(tableau.luid("datasource", LEDGER), 0)
    jobs = run()  # the relay's worker sends what the CLI queued
    assert [(j.id, j.state) for j in jobs] == [(failed.id, "failed"), (new_id, "succeeded")]


def test_replay_dead_replays_every_dead_job_once(config: Path, run: Run, tableau: Emulator) -> None:
    tableau.faults.fail(seconds=60, status=503)
    dead = run(101, 303)
    assert [j.state for j in dead] == ["dead", "dead"]
    first = replay(config, "--dead")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"{dead[0].id} -> 3", f"{dead[1].id} -> 4"]
    again = replay(config, "--dead")
    assert again.returncode == 0
    assert again.stdout == "no dead refresh jobs to replay\n"


def test_a_job_that_cannot_be_replayed_is_named_and_fails_the_command(
    config: Path, run: Run
) -> None:
    succeeded, failed = run(101, 303)
    assert (succeeded.state, failed.state) == ("succeeded", "failed")
    result = replay(config, str(succeeded.id), str(failed.id), "99")
    assert result.returncode == 1
    assert result.stdout == f"{failed.id} -> 3\n"  # the others did not stop it
    assert f"refresh job {succeeded.id} is succeeded" in result.stderr
    assert "refresh job 99 does not exist" in result.stderr
    assert "2 of 3 job(s) could not be replayed" in result.stderr


def test_replay_without_ids_or_dead_is_a_usage_error(config: Path) -> None:
    result = replay(config)
    assert result.returncode == 2
    assert "--dead" in result.stderr
