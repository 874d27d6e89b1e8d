"""The relay's own commands as a user runs them: `serve` with `send-test`, and `demo`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dbt_tableau_relay.emulator import Emulator
from dbt_tableau_relay.store import Store

SECRET = "acceptance-webhook-secret"
PAT_NAME, PAT_SECRET = "acc-pat", "acc-pat-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbt_tableau_relay", *args],
        capture_output=True,
        text=True,
        env=os.environ | (env or {}),
        timeout=timeout,
        check=False,
    )


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
    env = os.environ | {"DBT_WEBHOOK_SECRET": SECRET, "TABLEAU_TOKEN_SECRET": PAT_SECRET}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_tableau_relay", "--config", str(config), "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url), 30)
        yield url, tmp_path
    finally:
        stop_gracefully(proc)
        log.close()
        output = (tmp_path / "serve.log").read_text()
        assert "worker.stopped" in output
        assert PAT_SECRET not in output
        assert SECRET not in output


def stop_gracefully(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an orchestrator stops it; uvicorn shuts down, then re-raises the signal."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) in (0, -signal.SIGTERM)


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


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
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_tableau_relay", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _healthy(url), 30)
    assert (
        cli("send-test", f"{url}/webhooks/dbt", "--secret", SECRET, "--job-id", "1").returncode == 0
    )
    wait_for(lambda: len(tableau.refresh_posts()) == 1, 30)
    stop_gracefully(proc)
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
