"""The Dockerfile: what the image runs, as whom, and that its HEALTHCHECK really checks.

No image is built here (no Docker engine on the test machines): hadolint lints
the file (`make lint-deploy`), these tests read it, and the health check's own
command runs against a real relay.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_files import (
    DEPLOY,
    DOCKERFILE,
    ROOT,
    Instruction,
    dockerfile_env,
    dockerfile_instructions,
    listen_port,
)

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.config import parse_settings
from dbt_tableau_relay.service import RunningServer, serve_in_thread
from support import free_port


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"{keyword}: {len(found)} instructions"
    return found[0]


def test_base_is_a_pinned_slim_python_3_11(instructions: list[Instruction]) -> None:
    base = only(instructions, "FROM").arguments
    name, _, tag = base.partition(":")
    assert name == "python"
    assert tag.startswith("3.11-slim-"), f"{base}: pin a Debian release, not `latest` or `slim`"


def test_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    user, _, group = only(instructions, "USER").arguments.partition(":")
    assert user.isdigit(), "numeric, so that runAsNonRoot can check it"
    assert group.isdigit()
    assert int(user) != 0
    assert int(group) != 0
    keywords = [i.keyword for i in instructions]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_installs_the_checkout_without_a_pip_cache(instructions: list[Instruction]) -> None:
    runs = [i.arguments for i in instructions if i.keyword == "RUN" and "pip " in i.arguments]
    assert len(runs) == 1
    assert "--no-cache-dir" in runs[0]
    assert '".[postgres]"' in runs[0], "the checkout, with psycopg for PostgreSQL"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "postgres" in extras["optional-dependencies"]


def test_entrypoint_is_the_console_script_and_serve_the_default(
    instructions: list[Instruction],
) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert only(instructions, "ENTRYPOINT").exec_form() == ["dbt-tableau-relay"]
    assert "dbt-tableau-relay" in scripts
    assert only(instructions, "CMD").exec_form() == ["serve"]


def test_exposes_the_port_the_example_config_listens_on(instructions: list[Instruction]) -> None:
    text = (DEPLOY / "relay.yml").read_text()
    environ = {"POSTGRES_PASSWORD": "p", "RELAY_ADMIN_TOKEN": "t", "DBT_WEBHOOK_SECRET": "s"}
    environ |= {"TABLEAU_SERVER_URL": "https://t.example", "TABLEAU_TOKEN_NAME": "n"}
    settings = parse_settings(text, environ | {"TABLEAU_TOKEN_SECRET": "x"})
    assert only(instructions, "EXPOSE").arguments == str(listen_port(settings))


def test_config_path_and_working_directory(instructions: list[Instruction]) -> None:
    env = dockerfile_env(instructions)
    assert env["DBT_TABLEAU_RELAY_CONFIG"] == "/etc/dbt-tableau-relay/relay.yml"
    # The default sqlite:///relay.db is relative: the last WORKDIR is where it lands.
    workdirs = [i.arguments for i in instructions if i.keyword == "WORKDIR"]
    assert workdirs[-1] == "/var/lib/dbt-tableau-relay"


def test_dockerignore_lets_in_what_the_copies_need(instructions: list[Instruction]) -> None:
    allowed = {
        line.lstrip("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {
        source.rstrip("/")
        for i in instructions
        if i.keyword == "COPY"
        for source in i.arguments.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "src"}
    assert copied <= allowed


# -- the HEALTHCHECK's command, run as Docker runs it ------------------------------


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    arguments = only(instructions, "HEALTHCHECK").arguments
    options, _, command = arguments.partition("CMD ")
    assert "--start-period=" in options, "migrations take a while: no failures counted then"
    return Instruction("CMD", command).exec_form()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RunningServer]:
    settings = parse_settings(
        f"database_url: sqlite:///{tmp_path / 'relay.db'}\n"
        "dbt: {webhook_secrets: [s]}\n"
        "tableau: {server_url: 'http://127.0.0.1:9', token_name: n, token_secret: s}\n",
        {},
    )
    with serve_in_thread(create_app(settings)) as server:
        yield server


def run_healthcheck(command: list[str], url: str) -> subprocess.CompletedProcess[str]:
    assert command[0] == "python"
    return subprocess.run(
        [sys.executable, *command[1:]],
        env={"RELAY_HEALTHCHECK_URL": url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthcheck_asks_healthz_on_the_exposed_port(instructions: list[Instruction]) -> None:
    port = only(instructions, "EXPOSE").arguments
    assert f"'http://127.0.0.1:{port}/healthz'" in healthcheck_command(instructions)[-1]


def test_healthcheck_passes_against_a_running_relay(
    instructions: list[Instruction], relay: RunningServer
) -> None:
    result = run_healthcheck(healthcheck_command(instructions), f"{relay.url}/healthz")
    assert result.returncode == 0, result.stderr


def test_healthcheck_fails_when_nothing_answers(instructions: list[Instruction]) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    assert run_healthcheck(healthcheck_command(instructions), url).returncode != 0


def test_healthcheck_fails_on_an_error_status(
    instructions: list[Instruction], relay: RunningServer
) -> None:
    result = run_healthcheck(healthcheck_command(instructions), f"{relay.url}/no-such-path")
    assert result.returncode != 0
    assert "404" in result.stderr
