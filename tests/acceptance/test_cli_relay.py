"""The relay's own commands as a user runs them: `serve` with `send-test`, and `demo`."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.config import load_settings
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import post_event, sample_event
from dbt_tableau_relay.service import serve_in_thread
from dbt_tableau_relay.store import Store
from support import RELAY, ServeProcess, free_port, wait_for
from support import run_cli as cli

SECRET = "acceptance-webhook-secret"
PAT_NAME, PAT_SECRET = "acc-pat", "acc-pat-secret"


@pytest.fixture
def tableau() -> Iterator[Emulator]:
    with Emulator(
        site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.3
    ) as emu:
        yield emu


@pytest.fixture
def served(tmp_path: Path, tableau: Emulator) -> Iterator[tuple[str, Path]]:
    """`dbt-tableau-relay serve` in a subprocess, configured by relay.yml and the environment."""
    port = free_port()
    config = tmp_path / "relay.yml"
    config.write_text(
        f"""
database_url: sqlite:///{tmp_path / "relay.db"}
listen: 127.0.0.1:{port}
dbt:
  webhook_secrets: ["{{{{ env_var('DBT_WEBHOOK_SECRET') }}}}"]
tableau:
  server_url: {tableau.url}
  site: marketing
  token_name: {PAT_NAME}
  token_secret: "{{{{ env_var('TABLEAU_TOKEN_SECRET') }}}}"
rules:
  - name: sales
    on:
      job_id: 101
    refresh:
      - workbook: Sales/Executive Overview
worker:
  poll_interval: 0.2
"""
    )
    env = {"DBT_WEBHOOK_SECRET": SECRET, "TABLEAU_TOKEN_SECRET": PAT_SECRET}
    relay = ServeProcess(config, port, env=env).start()
    try:
        yield relay.url, tmp_path
    finally:
        relay.stop()
        output = relay.output()
        assert "worker.stopped" in output
        assert PAT_SECRET not in output
        assert SECRET not in output


def test_serve_refreshes_what_send_test_announces(
    served: tuple[str, Path], tableau: Emulator
) -> None:
    url, folder = served
    result = cli("send-test", f"{url}/webhooks/dbt", "--secret", SECRET, "--job-id", "101")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 202" in result.stdout
    assert '"refreshes_queued":1' in result.stdout.replace(" ", "")
    store = Store(f"sqlite:///{folder / 'relay.db'}")
    try:
        wait_for(lambda: [j.state for j in store.list_jobs()] == ["succeeded"], 30)
    finally:
        store.dispose()
    assert len(tableau.refresh_posts()) == 1


def test_send_test_with_a_wrong_secret_is_refused(served: tuple[str, Path]) -> None:
    url, _ = served
    result = cli("send-test", f"{url}/webhooks/dbt", "--secret", "wrong", "--job-id", "101")
    assert result.returncode == 1
    assert "HTTP 401" in result.stdout


def test_send_test_started_event_is_ignored(served: tuple[str, Path]) -> None:
    url, _ = served
    result = cli(
        "send-test", f"{url}/webhooks/dbt", "--event", "started", env={"DBT_WEBHOOK_SECRET": SECRET}
    )
    assert result.returncode == 0, result.stdout
    assert "HTTP 200" in result.stdout
    assert "ignored" in result.stdout


def test_serve_signs_out_of_tableau_on_shutdown(tmp_path: Path, tableau: Emulator) -> None:
    port = free_port()
    config = tmp_path / "relay.yml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ndatabase_url: sqlite:///{tmp_path / 'r.db'}\n"
        f"dbt: {{webhook_secrets: [{SECRET}]}}\n"
        f"tableau: {{server_url: '{tableau.url}', site: marketing, token_name: {PAT_NAME},"
        f" token_secret: {PAT_SECRET}}}\n"
        "rules: [{name: a, on: {job_id: 1}, refresh: [{workbook: Sales/Executive Overview}]}]\n"
    )
    relay = ServeProcess(config, port).start()
    sent = cli("send-test", f"{relay.url}/webhooks/dbt", "--secret", SECRET, "--job-id", "1")
    assert sent.returncode == 0
    wait_for(lambda: len(tableau.refresh_posts()) == 1, 30)
    relay.stop()
    assert tableau.requests[-1].path.endswith("/auth/signout")


def test_serve_refuses_to_start_without_a_webhook_secret(tmp_path: Path, tableau: Emulator) -> None:
    config = tmp_path / "relay.yml"
    config.write_text(f"tableau: {{server_url: '{tableau.url}', token_name: a, token_secret: b}}\n")
    result = cli("--config", str(config), "serve", timeout=30)
    assert result.returncode == 2
    assert "webhook_secrets" in result.stderr


def test_demo_runs_the_whole_path_and_exits_zero() -> None:
    result = cli("demo", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 2 refreshes reached Tableau's verdict" in result.stdout
    assert "succeeded" in result.stdout
    assert "failed" in result.stdout
    # The lineage half: the failing run's decisions, as `explain` prints them.
    assert "Lineage refreshed 3 item(s) and skipped 2" in result.stdout
    assert any(
        line.startswith("skip")
        and "Sales/Pipeline Health" in line
        and "revenue_daily: error" in line
        for line in result.stdout.splitlines()
    )


def test_worker_alone_refreshes_what_a_receiver_recorded(tmp_path: Path, tableau: Emulator) -> None:
    """Scaled deployments: receivers record, `dbt-tableau-relay worker` processes refresh."""
    config = tmp_path / "relay.yml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'relay.db'}\n"
        f"dbt: {{webhook_secrets: [{SECRET}]}}\n"
        f"tableau: {{server_url: '{tableau.url}', site: marketing, token_name: {PAT_NAME},"
        f" token_secret: {PAT_SECRET}}}\n"
        "rules: [{name: a, on: {job_id: 7}, refresh: [{workbook: Finance/Executive Overview}]}]\n"
        "worker: {poll_interval: 0.2}\n"
    )
    settings = load_settings(config)
    with serve_in_thread(create_app(settings)) as receiver:  # a receiver without a worker
        answer = post_event(f"{receiver.url}/webhooks/dbt", sample_event(job_id=7), SECRET)
        assert answer.status_code == 202
    assert tableau.refresh_posts() == []  # nothing refreshes without a worker
    worker = subprocess.Popen(
        [*RELAY, "--config", str(config), "worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = Store(settings.database_url)
    try:
        wait_for(lambda: [j.state for j in store.list_jobs()] == ["succeeded"], 60, "the refresh")
    finally:
        store.dispose()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    assert tableau.requests[-1].path.endswith("/auth/signout")
