"""relay.yml: env_var() substitution, the `on` key, and clear errors."""

from pathlib import Path

import pytest

from dbt_tableau_relay.config import load_settings, parse_settings
from dbt_tableau_relay.errors import ConfigError

BASE = """
tableau:
  server_url: https://tableau.example.com
  site: marketing
  token_name: "{{ env_var('TABLEAU_TOKEN_NAME') }}"
  token_secret: "{{ env_var('TABLEAU_TOKEN_SECRET') }}"
"""
ENV = {"TABLEAU_TOKEN_NAME": "relay", "TABLEAU_TOKEN_SECRET": "pat-secret-value"}


def test_env_var_substitution() -> None:
    settings = parse_settings(BASE, ENV)
    assert settings.tableau.token_name == "relay"
    assert settings.tableau.token_secret is not None
    assert settings.tableau.token_secret.get_secret_value() == "pat-secret-value"


def test_env_var_default_and_partial_interpolation() -> None:
    text = BASE + "database_url: \"sqlite:///{{ env_var('DIR', '/var/lib') }}/relay.db\"\n"
    assert parse_settings(text, ENV).database_url == "sqlite:////var/lib/relay.db"


def test_env_var_with_double_quotes_and_spaces() -> None:
    text = BASE + 'listen: \'{{env_var("LISTEN" , "0.0.0.0:9000")}}\'\n'
    assert parse_settings(text, ENV).listen == "0.0.0.0:9000"


def test_a_missing_variable_is_named_with_its_place() -> None:
    with pytest.raises(ConfigError, match=r"tableau\.token_secret: .*TABLEAU_TOKEN_SECRET"):
        parse_settings(BASE, {"TABLEAU_TOKEN_NAME": "relay"})


def test_empty_admin_token_means_none() -> None:
    text = BASE + "admin_token: \"{{ env_var('RELAY_ADMIN_TOKEN', '') }}\"\n"
    assert parse_settings(text, ENV).admin_token is None


def test_bare_on_key_is_the_string_on_not_true() -> None:
    text = (
        BASE
        + """
rules:
  - name: sales
    on:
      job_id: [123, "456"]
      status: any
    refresh:
      - workbook: Sales/Executive Overview
"""
    )
    rule = parse_settings(text, ENV).rules[0]
    assert rule.on.job_id == frozenset({"123", "456"})
    assert rule.on.status == "any"
    assert rule.on.event == "job.run.completed"


def test_yes_and_no_stay_strings() -> None:
    text = BASE + "rules:\n  - name: yes\n    refresh: [{workbook: no}]\n"
    rule = parse_settings(text, ENV).rules[0]
    assert rule.name == "yes"
    assert rule.refresh[0].workbook == "no"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("unknown_key: 1\n", r"unknown_key: unknown key"),
        ("rules:\n  - name: a\n    refresh: []\n", r"rules\.0\.refresh"),
        (
            "rules:\n  - name: a\n    refresh: [{workbook: A/B, datasource: C/D}]\n",
            "exactly one of",
        ),
        ("rules:\n  - name: a\n    refresh: [{dashboard: A/B}]\n", "dashboard: unknown key"),
        ("rules:\n  - name: a\n    on: {status: maybe}\n    refresh: [{workbook: A}]\n", "status"),
        ("rules:\n  - name: a\n    on: {job_id: []}\n    refresh: [{workbook: A}]\n", "job_id"),
        (
            "rules:\n  - {name: a, refresh: [{workbook: A}]}\n"
            "  - {name: a, refresh: [{workbook: B}]}\n",
            "rule names must be unique: a",
        ),
    ],
)
def test_invalid_config_names_the_problem(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(BASE + extra, ENV)


def test_tableau_needs_a_way_to_sign_in() -> None:
    with pytest.raises(ConfigError, match="token_name and token_secret"):
        parse_settings("tableau:\n  server_url: https://t\n", {})


def test_errors_never_echo_a_secret() -> None:
    text = BASE + "tableau_extra: 1\n"
    with pytest.raises(ConfigError) as info:
        parse_settings(text.replace("tableau:", "tableau:\n  bogus: x", 1), ENV)
    assert "pat-secret-value" not in str(info.value)


def test_invalid_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_settings("tableau: [", {})


def test_load_settings_reads_the_env_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "custom.yml"
    path.write_text(BASE)
    monkeypatch.setenv("DBT_TABLEAU_RELAY_CONFIG", str(path))
    assert load_settings(environ=ENV).tableau.site == "marketing"


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yml", environ={})


@pytest.mark.parametrize(
    ("event", "status"),
    [("job.run.completed", "success"), ("job.run.errored", "error"), ("job.run.started", "any")],
)
def test_status_defaults_to_what_the_event_can_carry(event: str, status: str) -> None:
    rule = f"  - name: a\n    on: {{event: {event}}}\n    refresh: [{{workbook: A}}]\n"
    text = BASE + "rules:\n" + rule
    assert parse_settings(text, ENV).rules[0].on.status == status
