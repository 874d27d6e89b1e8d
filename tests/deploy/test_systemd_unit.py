"""deploy/systemd/dbt-tableau-relay.service: hardened, state in its StateDirectory, secrets
as credentials; `systemd-analyze` verifies it where systemd is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import DEPLOY, UNIT, unit_directives, variables_of

DIRECTIVES = unit_directives(UNIT.read_text())


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in DIRECTIVES if s == section and k == key]


def value(key: str, section: str = "Service") -> str:
    found = values(key, section)
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


def environment() -> dict[str, str]:
    return dict(item.split("=", 1) for item in values("Environment"))


def test_runs_serve_and_restarts_on_failure() -> None:
    assert value("ExecStart").endswith("/bin/dbt-tableau-relay serve")
    assert value("Restart") == "on-failure"
    assert value("WantedBy", "Install") == "multi-user.target"


def test_a_user_of_its_own_and_the_database_in_its_state_directory() -> None:
    assert value("DynamicUser") == "yes"
    state = value("StateDirectory")
    # The default database_url, sqlite:///relay.db, is relative to the working directory.
    assert value("WorkingDirectory") == f"%S/{state}"


def test_secrets_are_credentials_read_through_file_variables() -> None:
    credentials = {v.split(":", 1)[0]: v.split(":", 1)[1] for v in values("LoadCredential")}
    files = {k: v for k, v in environment().items() if k.endswith("_FILE")}
    assert sorted(files.values()) == sorted(f"%d/{name}" for name in credentials)
    needed = variables_of((DEPLOY / "relay.yml").read_text())
    secrets = {"RELAY_ADMIN_TOKEN", "DBT_WEBHOOK_SECRET", "TABLEAU_TOKEN_SECRET"}
    assert secrets <= set(needed), "the names the example configs read"
    assert {name.removesuffix("_FILE") for name in files} == secrets


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("UMask", "0077"),
    ],
)
def test_hardening(key: str, expected: str) -> None:
    assert value(key) == expected


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")


def installed_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart on this venv's relay: verify checks that it exists."""
    relay = Path(sys.prefix) / "bin" / "dbt-tableau-relay"
    assert relay.exists()
    text = UNIT.read_text().replace("/opt/dbt-tableau-relay/bin/dbt-tableau-relay", str(relay))
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_systemd
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    result = analyze("verify", str(installed_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", "an unknown or misspelt directive is only a warning"


@needs_systemd
def test_systemd_analyze_security_rates_it_well_hardened(tmp_path: Path) -> None:
    # Exposure 0 (locked down) to 10, the threshold in tenths; up to 1.9 is "OK". Measured: 1.3.
    result = analyze("security", "--offline=yes", "--threshold=20", str(installed_copy(tmp_path)))
    assert result.returncode == 0, result.stdout[-2000:]
