"""relay.yml: env_var() substitution, the `on` key, and clear errors."""

from pathlib import Path

import pytest

from dbt_tableau_relay.config import hide_password, load_settings, parse_settings
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


# -- secrets from files: the _FILE convention of Docker and Kubernetes secrets --------

SECRET_TEXT = "webhook-secret-from-a-file"
DBT_SECRET = BASE + "dbt:\n  webhook_secrets: [\"{{ env_var('DBT_WEBHOOK_SECRET') }}\"]\n"


def _webhook_secret(environ: dict[str, str]) -> str:
    (secret,) = parse_settings(DBT_SECRET, ENV | environ).dbt.webhook_secrets
    return secret.get_secret_value()


def test_an_unset_variable_is_read_from_the_file_its_FILE_variable_names(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET_TEXT)
    assert _webhook_secret({"DBT_WEBHOOK_SECRET_FILE": str(path)}) == SECRET_TEXT


def test_a_secret_files_trailing_newline_is_not_part_of_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET_TEXT.encode() + b"\r\n")
    assert _webhook_secret({"DBT_WEBHOOK_SECRET_FILE": str(path)}) == SECRET_TEXT


def test_inner_newlines_and_spaces_of_a_secret_file_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(" line one\nline two \n")
    assert _webhook_secret({"DBT_WEBHOOK_SECRET_FILE": str(path)}) == " line one\nline two "


def test_the_variable_itself_wins_over_its_FILE_variable(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("from-the-file")
    environ = {"DBT_WEBHOOK_SECRET": "from-the-env", "DBT_WEBHOOK_SECRET_FILE": str(path)}
    assert _webhook_secret(environ) == "from-the-env"


def test_a_FILE_variable_wins_over_the_default(tmp_path: Path) -> None:
    path = tmp_path / "listen"
    path.write_text("127.0.0.1:9999\n")
    text = BASE + "listen: \"{{ env_var('LISTEN', '127.0.0.1:8080') }}\"\n"
    assert parse_settings(text, ENV | {"LISTEN_FILE": str(path)}).listen == "127.0.0.1:9999"


def test_a_file_that_contains_env_var_syntax_is_taken_literally(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("{{ env_var('TABLEAU_TOKEN_SECRET') }}")
    assert _webhook_secret({"DBT_WEBHOOK_SECRET_FILE": str(path)}) == path.read_text()


def test_a_missing_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    environ = {"DBT_WEBHOOK_SECRET_FILE": str(tmp_path / "absent")}
    with pytest.raises(ConfigError, match=r"dbt\.webhook_secrets\.0: .*DBT_WEBHOOK_SECRET_FILE"):
        parse_settings(DBT_SECRET, ENV | environ)


def test_a_directory_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DBT_WEBHOOK_SECRET_FILE"):
        parse_settings(DBT_SECRET, ENV | {"DBT_WEBHOOK_SECRET_FILE": str(tmp_path)})


def test_a_path_through_a_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    """Unreadable even for root (CI runs as root, so no permission bits would do)."""
    path = tmp_path / "secret"
    path.write_text(SECRET_TEXT)
    environ = {"DBT_WEBHOOK_SECRET_FILE": str(path / "child")}
    with pytest.raises(ConfigError, match=r"DBT_WEBHOOK_SECRET_FILE.*Not a directory"):
        parse_settings(DBT_SECRET, ENV | environ)


def test_a_file_that_is_not_utf8_is_an_error_that_quotes_none_of_it(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"\xfe\xed" + SECRET_TEXT.encode())
    with pytest.raises(ConfigError, match=r"DBT_WEBHOOK_SECRET_FILE.*not UTF-8") as info:
        parse_settings(DBT_SECRET, ENV | {"DBT_WEBHOOK_SECRET_FILE": str(path)})
    assert SECRET_TEXT not in str(info.value)
    assert "0xfe" not in str(info.value)


def test_an_endless_file_is_refused_after_a_bounded_read() -> None:
    """A variable pointing at /dev/zero fails fast instead of filling the memory."""
    with pytest.raises(ConfigError, match=r"DBT_WEBHOOK_SECRET_FILE.*larger than 65536 bytes"):
        parse_settings(DBT_SECRET, ENV | {"DBT_WEBHOOK_SECRET_FILE": "/dev/zero"})


def test_neither_the_variable_nor_its_FILE_variable_is_the_usual_error() -> None:
    with pytest.raises(ConfigError, match="DBT_WEBHOOK_SECRET is not set and has no default"):
        parse_settings(DBT_SECRET, ENV)


# -- the webhook endpoint's limits ---------------------------------------------------


def test_the_replay_window_is_off_and_the_body_timeout_ten_seconds_by_default() -> None:
    dbt = parse_settings(BASE, ENV).dbt
    assert (dbt.max_event_age_seconds, dbt.body_timeout_seconds) == (None, 10.0)


def test_the_replay_window_and_body_timeout_are_read() -> None:
    text = BASE + "dbt:\n  max_event_age_seconds: 3600\n  body_timeout_seconds: 2.5\n"
    dbt = parse_settings(text, ENV).dbt
    assert (dbt.max_event_age_seconds, dbt.body_timeout_seconds) == (3600, 2.5)


@pytest.mark.parametrize("key", ["max_event_age_seconds", "body_timeout_seconds"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_limits_must_be_positive(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"dbt\.{key}"):
        parse_settings(BASE + f"dbt:\n  {key}: {value}\n", ENV)


# -- dbt.cloud: the Admin API ----------------------------------------------------------

CLOUD_ENV = ENV | {"DBT_CLOUD_API_TOKEN": "dbtc_service-token-value"}


def cloud(lines: str) -> str:
    """BASE plus a `dbt.cloud` block made of `lines` (indented under it)."""
    body = "".join(f"    {line}\n" for line in lines.strip().splitlines())
    return BASE + "dbt:\n  cloud:\n" + body


TOKEN_LINE = "api_token: \"{{ env_var('DBT_CLOUD_API_TOKEN') }}\""


def test_dbt_cloud_is_absent_by_default() -> None:
    assert parse_settings(BASE, ENV).dbt.cloud is None


def test_dbt_cloud_defaults_to_the_multi_tenant_url_and_no_reconciliation() -> None:
    settings = parse_settings(cloud(f"account_id: 12\n{TOKEN_LINE}"), CLOUD_ENV).dbt.cloud
    assert settings is not None
    assert (settings.access_url, settings.account_id) == ("https://cloud.getdbt.com", 12)
    assert settings.api_token.get_secret_value() == "dbtc_service-token-value"
    assert settings.reconcile_seconds is None


def test_the_api_token_is_hidden_in_the_settings_repr() -> None:
    settings = parse_settings(cloud(f"account_id: 12\n{TOKEN_LINE}"), CLOUD_ENV)
    assert "dbtc_service-token-value" not in repr(settings)
    assert "dbtc_service-token-value" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("url", "read"),
    [
        ("https://ab123.us1.dbt.com", "https://ab123.us1.dbt.com"),  # a regional cell
        ("https://emea.dbt.com/", "https://emea.dbt.com"),
        ("https://dbt.acme-single-tenant.com", "https://dbt.acme-single-tenant.com"),
        ("http://127.0.0.1:8901", "http://127.0.0.1:8901"),  # the emulator
    ],
)
def test_any_access_url_is_read_without_its_trailing_slash(url: str, read: str) -> None:
    text = cloud(f"access_url: {url}\naccount_id: 1\n{TOKEN_LINE}")
    settings = parse_settings(text, CLOUD_ENV).dbt.cloud
    assert settings is not None
    assert settings.access_url == read


def test_account_id_and_reconcile_seconds_may_come_from_variables() -> None:
    lines = (
        "account_id: \"{{ env_var('DBT_CLOUD_ACCOUNT_ID') }}\"\n"
        "reconcile_seconds: \"{{ env_var('RECONCILE', '300') }}\"\n" + TOKEN_LINE
    )
    settings = parse_settings(cloud(lines), CLOUD_ENV | {"DBT_CLOUD_ACCOUNT_ID": "70"}).dbt.cloud
    assert settings is not None
    assert (settings.account_id, settings.reconcile_seconds) == (70, 300.0)


def test_an_empty_reconcile_seconds_means_no_reconciliation() -> None:
    lines = f"account_id: 1\nreconcile_seconds: \"{{{{ env_var('R', '') }}}}\"\n{TOKEN_LINE}"
    settings = parse_settings(cloud(lines), CLOUD_ENV).dbt.cloud
    assert settings is not None
    assert settings.reconcile_seconds is None


@pytest.mark.parametrize(
    ("lines", "where"),
    [
        (TOKEN_LINE, r"dbt\.cloud\.account_id: Field required"),
        ("account_id: 1", r"dbt\.cloud\.api_token: Field required"),
        ('account_id: 1\napi_token: " "', r"dbt\.cloud\.api_token: .*must not be empty"),
        (f"account_id: 0\n{TOKEN_LINE}", r"dbt\.cloud\.account_id"),
        (f"account_id: abc\n{TOKEN_LINE}", r"dbt\.cloud\.account_id"),
        (f"account_id: 1\nreconcile_seconds: 0\n{TOKEN_LINE}", r"dbt\.cloud\.reconcile_seconds"),
        (f"account_id: 1\nreconcile_seconds: -5\n{TOKEN_LINE}", r"dbt\.cloud\.reconcile_seconds"),
        (f"access_url: cloud.getdbt.com\naccount_id: 1\n{TOKEN_LINE}", r"access_url must be"),
        (f"access_url: ftp://x.example\naccount_id: 1\n{TOKEN_LINE}", r"access_url must be"),
        (f"account_id: 1\nhost: x\n{TOKEN_LINE}", r"dbt\.cloud\.host: unknown key"),
    ],
)
def test_a_bad_dbt_cloud_block_is_named(lines: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where) as info:
        parse_settings(cloud(lines), CLOUD_ENV)
    assert "dbtc_service-token-value" not in str(info.value)


# -- database_url: the password is never shown ------------------------------------

PG_PASSWORD = "pg-Pa55-w0rd-9c1e"
PG_URL = f"postgresql+psycopg://relay:{PG_PASSWORD}@db.example.com:5432/relay"


def test_settings_never_show_the_database_password() -> None:
    settings = parse_settings(BASE + f"database_url: {PG_URL}\n", ENV)
    for shown in (repr(settings), str(settings), repr(settings.database_url)):
        assert PG_PASSWORD not in shown
        assert "postgresql+psycopg://relay:***@db.example.com:5432/relay" in shown
    assert settings.database_url == PG_URL  # the store connects with the URL itself
    assert f"{settings.database_url}" == PG_URL


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (PG_URL, "postgresql+psycopg://relay:***@db.example.com:5432/relay"),
        (
            f"postgresql+psycopg://relay@db/relay?password={PG_PASSWORD}&sslmode=require",
            "postgresql+psycopg://relay@db/relay?password=***&sslmode=require",
        ),
        ("postgresql+psycopg://relay@db/relay", "postgresql+psycopg://relay@db/relay"),
        ("sqlite:////var/lib/relay/relay.db", "sqlite:////var/lib/relay/relay.db"),
        (f"{PG_PASSWORD} is not a URL", "(not a database URL)"),
    ],
)
def test_database_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert hide_password(url) == shown


def test_concurrent_connections_are_bounded_by_default() -> None:
    assert parse_settings(BASE, ENV).limit_concurrency == 256
    assert parse_settings(BASE + "limit_concurrency: 32\n", ENV).limit_concurrency == 32
    with pytest.raises(ConfigError, match="limit_concurrency"):
        parse_settings(BASE + "limit_concurrency: 0\n", ENV)
