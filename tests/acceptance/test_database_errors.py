"""A database the relay cannot use stops every command with one line, never a traceback,
and never shows the URL's password: `serve`, `worker`, `check` and `replay` as subprocesses,
against PostgreSQL URLs that carry a password."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from dbt_tableau_relay.emulators.tableau import Emulator
from support import free_port, run_cli

PASSWORD = "Db-Pa55w0rd-4e7c1a"
COMMANDS = [["serve"], ["worker"], ["check"], ["replay", "--dead"]]
PAT_NAME, PAT_SECRET = "db-pat", "db-pat-secret"

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def tableau() -> Iterator[Emulator]:
    with Emulator(site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET) as emu:
        yield emu


def write_config(folder: Path, database_url: str, tableau_url: str) -> Path:
    config = folder / "relay.yml"
    config.write_text(
        f"""
database_url: "{{{{ env_var('RELAY_DATABASE_URL') }}}}"
listen: 127.0.0.1:{free_port()}
dbt: {{webhook_secrets: [a-webhook-secret]}}
tableau:
  server_url: {tableau_url}
  site: marketing
  token_name: {PAT_NAME}
  token_secret: {PAT_SECRET}
"""
    )
    return config


def with_password(postgres_url: str, **changes: object) -> str:
    """The test's PostgreSQL URL, with a password (trust auth ignores it) and `changes`."""
    url = make_url(postgres_url).set(password=PASSWORD, **changes)  # type: ignore[arg-type]
    return url.render_as_string(hide_password=False)


def unusable_urls(postgres_url: str) -> dict[str, tuple[str, str]]:
    """name -> (URL, what the error line must tell the user to check)."""
    return {
        "wrong user": (with_password(postgres_url, username="no_such_relay_user"), "user name"),
        "missing database": (
            with_password(postgres_url, database="no_such_relay_db"),
            "the database name",
        ),
        "closed port": (with_password(postgres_url, port=free_port()), "the host and port"),
    }


@pytest.mark.parametrize("problem", ["wrong user", "missing database", "closed port"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_unusable_database_is_one_line_without_the_password(
    tmp_path: Path, tableau: Emulator, postgres_url: str, problem: str, command: list[str]
) -> None:
    database_url, check = unusable_urls(postgres_url)[problem]
    config = write_config(tmp_path, database_url, tableau.url)
    result = run_cli(
        "--config", str(config), *command, env={"RELAY_DATABASE_URL": database_url}, timeout=90
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert PASSWORD not in output
    assert "Traceback" not in output
    [line] = result.stderr.splitlines()
    shown = make_url(database_url).render_as_string(hide_password=True)
    assert line.startswith(f"error: database {shown}: ")
    assert check in line.partition("; check database_url: ")[2]


def test_check_shows_the_database_url_without_its_password(
    tmp_path: Path, tableau: Emulator, postgres_url: str
) -> None:
    database_url = with_password(postgres_url)
    config = write_config(tmp_path, database_url, tableau.url)
    result = run_cli("--config", str(config), "check", env={"RELAY_DATABASE_URL": database_url})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert PASSWORD not in output
    assert f"database {make_url(database_url).render_as_string(hide_password=True)}" in output
    assert "ok      database: postgresql answers" in result.stdout
