"""`check` on a deployment's config: its database_url holds the PostgreSQL password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dbt_tableau_relay.cli import shown_database_url
from dbt_tableau_relay.emulators.tableau import Emulator

PASSWORD = "pg-pw-4f1c9e"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql+psycopg://relay:{PASSWORD}@db:5432/relay",
            "postgresql+psycopg://relay:***@db:5432/relay",
        ),
        ("postgresql+psycopg://relay@db/relay", "postgresql+psycopg://relay@db/relay"),
        ("sqlite:///relay.db", "sqlite:///relay.db"),
        (f"not a url {PASSWORD}", "(not a database URL)"),
    ],
)
def test_shown_database_url(url: str, shown: str) -> None:
    assert shown_database_url(url) == shown


def test_check_prints_the_database_without_its_password(tmp_path: Path) -> None:
    with Emulator(site="marketing", pat_name="n", pat_secret="s") as tableau:
        config = tmp_path / "relay.yml"
        config.write_text(
            f"database_url: postgresql+psycopg://relay:{PASSWORD}@127.0.0.1:1/relay\n"
            f"tableau: {{server_url: '{tableau.url}', site: marketing,"
            " token_name: n, token_secret: s}\n"
        )
        result = subprocess.run(
            [sys.executable, "-m", "dbt_tableau_relay", "--config", str(config), "check"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database postgresql+psycopg://relay:***@127.0.0.1:1/relay" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
