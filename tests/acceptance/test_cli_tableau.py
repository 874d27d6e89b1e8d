"""The Tableau commands of the CLI, run as a user runs them: subprocesses against an emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dbt_tableau_relay.emulators.tableau import Emulator
from support import free_port

PAT_NAME = "cli-pat"
PAT_SECRET = "cli-secret-5b1d0a"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(
        site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.5
    ) as e:
        yield e


def write_config(path: Path, server_url: str, rules: str = "") -> Path:
    path.write_text(
        f"""
tableau:
  server_url: {server_url}
  site: marketing
  token_name: "{{{{ env_var('TABLEAU_TOKEN_NAME') }}}}"
  token_secret: "{{{{ env_var('TABLEAU_TOKEN_SECRET') }}}}"
{rules}
"""
    )
    return path


@pytest.fixture
def config(tmp_path: Path, emu: Emulator) -> Path:
    return write_config(tmp_path / "relay.yml", emu.url)


def relay(
    *args: str, config: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TABLEAU_TOKEN_NAME": PAT_NAME, "TABLEAU_TOKEN_SECRET": PAT_SECRET}
    prefix = ["--config", str(config)] if config else []
    result = subprocess.run(
        [sys.executable, "-m", "dbt_tableau_relay", *prefix, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert PAT_SECRET not in result.stdout + result.stderr
    return result


def test_refresh_and_wait_succeeds(config: Path) -> None:
    result = relay("refresh", "--workbook", "Sales/Executive Overview", "--wait", config=config)
    assert result.returncode == 0, result.stderr
    assert "succeeded: workbook Sales/Executive Overview" in result.stdout
    assert "Tableau job" in result.stderr  # progress while waiting


def test_failed_refresh_exits_non_zero_with_tableau_notes(config: Path) -> None:
    result = relay("refresh", "--datasource", "Finance/Legacy Ledger", "--wait", config=config)
    assert result.returncode == 1
    assert "finishCode 1" in result.stderr
    assert "Login failed" in result.stderr


def test_refresh_not_allowed_exits_with_tableau_code(config: Path) -> None:
    result = relay("refresh", "--datasource", "Sales/Live Inventory", config=config)
    assert result.returncode == 1
    assert "409090" in result.stderr


def test_refresh_by_luid_without_waiting(config: Path, emu: Emulator) -> None:
    luid = emu.luid("datasource", "Finance/Revenue")
    result = relay("refresh", "--datasource-id", luid, config=config)
    assert result.returncode == 0, result.stderr
    assert f"queued: datasource Finance/Revenue ({luid})" in result.stdout


def test_refresh_needs_exactly_one_target(config: Path) -> None:
    result = relay("refresh", "--workbook", "A/B", "--datasource", "C/D", config=config)
    assert result.returncode == 2
    assert "exactly one of" in result.stderr


def test_ambiguous_name_is_a_clear_error(config: Path) -> None:
    result = relay("refresh", "--workbook", "Executive Overview", config=config)
    assert result.returncode == 1
    assert "'Finance/Executive Overview', 'Sales/Executive Overview'" in result.stderr


def test_list_workbooks_shows_paths_and_luids(config: Path, emu: Emulator) -> None:
    result = relay("tableau", "list", "workbooks", config=config)
    assert result.returncode == 0, result.stderr
    luid = emu.luid("workbook", "Finance/Regional/EMEA Revenue")
    assert f"{luid}  Finance/Regional/EMEA Revenue" in result.stdout.splitlines()


def test_list_projects_shows_nesting(config: Path) -> None:
    result = relay("tableau", "list", "projects", config=config)
    assert result.returncode == 0, result.stderr
    assert any(line.endswith("  Finance/Regional") for line in result.stdout.splitlines())


def test_check_reports_each_target_and_fails_on_a_bad_one(tmp_path: Path, emu: Emulator) -> None:
    rules = """
rules:
  - name: sales
    on: {job_id: 123}
    refresh:
      - workbook: Sales/Executive Overview
      - datasource: Finance/Nope
"""
    result = relay("check", config=write_config(tmp_path / "relay.yml", emu.url, rules))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok") and "Sales/Executive Overview ->" in line for line in lines)
    assert any(line.startswith("FAILED") and "Finance/Nope" in line for line in lines)


def test_check_passes_on_a_good_config(tmp_path: Path, emu: Emulator) -> None:
    rules = "rules:\n  - name: a\n    refresh: [{workbook: Finance/Executive Overview}]\n"
    result = relay("check", config=write_config(tmp_path / "relay.yml", emu.url, rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "REST API 3.27" in result.stdout


def test_check_names_a_missing_variable(tmp_path: Path) -> None:
    path = tmp_path / "relay.yml"
    path.write_text(
        "tableau:\n  server_url: http://x\n  token_name: n\n"
        "  token_secret: \"{{ env_var('NOPE_SECRET') }}\"\n"
    )
    result = relay("check", config=path)
    assert result.returncode == 2
    assert "NOPE_SECRET" in result.stderr


def test_wrong_token_is_reported_without_the_secret(tmp_path: Path, emu: Emulator) -> None:
    path = tmp_path / "relay.yml"
    path.write_text(
        f"tableau:\n  server_url: {emu.url}\n  site: marketing\n"
        f"  token_name: {PAT_NAME}\n  token_secret: not-the-secret\n"
    )
    result = relay("tableau", "list", "workbooks", config=path)
    assert result.returncode == 1
    assert "401001" in result.stderr


def test_emulator_command_serves_a_refresh(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dbt_tableau_relay",
            "emulator",
            "--port",
            str(port),
            "--site",
            "marketing",
            "--pat-name",
            PAT_NAME,
            "--pat-secret",
            PAT_SECRET,
            "--job-duration",
            "0.3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/api/3.27/serverInfo", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        config = write_config(tmp_path / "relay.yml", url)
        result = relay(
            "refresh", "--workbook", "Marketing/Campaign Performance", "--wait", config=config
        )
        assert result.returncode == 0, result.stderr
    finally:
        proc.terminate()
        proc.wait(10)
