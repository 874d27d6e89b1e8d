"""relay.yml: reading, `env_var()` substitution and validation.

The file is parsed as YAML 1.2 booleans (so the bare key `on` stays the string
"on", as in GitHub Actions), every string value has dbt's
`{{ env_var('NAME') }}` / `{{ env_var('NAME', 'default') }}` replaced (when
NAME is unset, by the content of the file `NAME_FILE` names: Docker and
Kubernetes secrets), and the result is validated into one frozen `Settings`
object that the entry point builds and passes in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dbt_tableau_relay.errors import ConfigError

DEFAULT_CONFIG_PATH = "relay.yml"
CONFIG_ENV_VAR = "DBT_TABLEAU_RELAY_CONFIG"
FILE_SUFFIX = "_FILE"  # env_var('NAME') falls back to the content of the file $NAME_FILE names
MAX_SECRET_FILE_BYTES = 64 * 1024

_ENV_VAR = re.compile(
    r"""\{\{\s*env_var\(\s*(['"])(?P<name>[^'"]+)\1\s*(?:,\s*(['"])(?P<default>.*?)\3\s*)?\)\s*\}\}"""
)


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, never on/off/yes/no."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _as_id_set(value: Any) -> frozenset[str]:
    """dbt ids arrive as strings or integers; a rule may give one or a list."""
    values = value if isinstance(value, list | tuple | set | frozenset) else [value]
    ids = frozenset(str(v).strip() for v in values)
    if not ids or "" in ids:
        raise ValueError("must be an id or a non-empty list of ids")
    return ids


IdSet = Annotated[frozenset[str], BeforeValidator(_as_id_set)]


def hide_password(url: str) -> str:
    """The database URL as logs, errors and output show it: any password as `***`."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "(not a database URL)"  # it cannot be parsed, so no part of it is shown
    if "password" in parsed.query:  # libpq takes `?password=` too
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


class DatabaseUrl(str):
    """`database_url`: the URL itself (the store connects with it), shown without its
    password by `repr`, hence by `repr(settings)`, `str(settings)` and tracebacks."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(hide_password(self))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectedApp(_Strict):
    """A Tableau connected app (direct trust): the relay signs its own JWTs."""

    client_id: str
    secret_id: str
    secret_value: SecretStr
    username: str
    # The REST methods the relay calls: list content, refresh it, follow jobs.
    scopes: tuple[str, ...] = (
        "tableau:content:read",
        "tableau:workbooks:update",
        "tableau:datasources:update",
        "tableau:jobs:read",
    )


class TableauSettings(_Strict):
    server_url: str
    site: str = ""
    token_name: str | None = None
    token_secret: SecretStr | None = None
    connected_app: ConnectedApp | None = None
    request_timeout: float = Field(default=30.0, gt=0, description="seconds for one HTTP call")
    verify_ssl: bool = True

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> TableauSettings:
        if not self.server_url.startswith(("http://", "https://")):
            raise ValueError("server_url must start with http:// or https://")
        has_pat = bool(self.token_name or self.token_secret)
        if has_pat and self.connected_app:
            raise ValueError("give either token_name/token_secret or connected_app, not both")
        if not self.connected_app and not (self.token_name and self.token_secret):
            raise ValueError("token_name and token_secret (or connected_app) are required")
        return self


LineageSource = Literal["exposures", "tableau_lineage"]
LINEAGE_SOURCES: tuple[LineageSource, ...] = ("exposures", "tableau_lineage")


class Target(_Strict):
    """What a rule refreshes: one Tableau item by path or LUID, or what lineage finds.

    `exposures: true` and `tableau_lineage: true` name no item: the worker
    finds the items downstream of the models the run rebuilt (docs/lineage.md).
    """

    workbook: str | None = None
    datasource: str | None = None
    workbook_id: str | None = None
    datasource_id: str | None = None
    exposures: Literal[True] | None = None
    tableau_lineage: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = [k for k, v in self.model_dump().items() if v]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of workbook, datasource, workbook_id, datasource_id,"
                " exposures: true, tableau_lineage: true"
            )
        return self

    @property
    def lineage(self) -> LineageSource | None:
        """The lineage source this target asks for, or None for one named item."""
        if self.exposures:
            return "exposures"
        return "tableau_lineage" if self.tableau_lineage else None

    @property
    def kind(self) -> Literal["workbook", "datasource"]:
        return "workbook" if (self.workbook or self.workbook_id) else "datasource"

    @property
    def path(self) -> str | None:
        return self.workbook or self.datasource

    @property
    def luid(self) -> str | None:
        return self.workbook_id or self.datasource_id

    @property
    def by(self) -> Literal["path", "luid"]:
        return "path" if self.path else "luid"

    @property
    def ref(self) -> str:
        """The path or the LUID, whichever names the item."""
        return self.path or self.luid or ""

    @property
    def key(self) -> str:
        """`kind:by:ref`, the identity that coalesces refresh jobs of one item."""
        return f"lineage:{self.lineage}" if self.lineage else f"{self.kind}:{self.by}:{self.ref}"

    def __str__(self) -> str:
        return self.lineage or f"{self.kind} {self.path or self.luid}"


# What a rule's `status` means when it gives none: the one status each event can carry.
DEFAULT_STATUS: dict[str, str] = {
    "job.run.completed": "success",
    "job.run.errored": "error",
    "job.run.started": "any",
}


class RuleMatch(_Strict):
    event: Literal["job.run.started", "job.run.completed", "job.run.errored"] = "job.run.completed"
    status: Literal["success", "error", "cancelled", "any"] = "success"
    job_id: IdSet | None = None
    environment_id: IdSet | None = None
    project_id: IdSet | None = None
    account_id: IdSet | None = None

    @model_validator(mode="before")
    @classmethod
    def _status_defaults_to_the_events(cls, data: Any) -> Any:
        """`on: {event: job.run.errored}` means errored runs, not "errored and successful"."""
        if isinstance(data, dict) and "status" not in data:
            event = data.get("event", "job.run.completed")
            data = {**data, "status": DEFAULT_STATUS.get(event, "success")}
        return data


class Rule(_Strict):
    name: str
    on: RuleMatch = RuleMatch()
    refresh: tuple[Target, ...] = Field(min_length=1)
    wait: bool = True
    incremental: bool = False

    @property
    def items(self) -> tuple[Target, ...]:
        """The targets that name one Tableau item each."""
        return tuple(t for t in self.refresh if t.lineage is None)

    @property
    def lineage(self) -> tuple[LineageSource, ...]:
        """The lineage sources the rule asks for, in a fixed order."""
        asked = {t.lineage for t in self.refresh}
        return tuple(s for s in LINEAGE_SOURCES if s in asked)


class WorkerSettings(_Strict):
    concurrency: int = Field(default=8, ge=1, le=64, description="refreshes sent or polled at once")
    max_attempts: int = Field(default=8, ge=1, description="sends before a job is dead-lettered")
    retry_base_seconds: float = Field(default=2.0, gt=0, description="first backoff ceiling")
    retry_max_seconds: float = Field(default=300.0, gt=0, description="longest backoff")
    busy_retry_seconds: float = Field(default=20.0, gt=0, description="re-send after a 409093")
    lease_seconds: float = Field(default=120.0, gt=0, description="lease on a claimed job")
    poll_interval: float = Field(default=1.0, gt=0, description="idle wait between looks for work")
    follow_timeout: float = Field(default=3 * 3600.0, gt=0, description="give up following after")
    leader_lease_seconds: float = Field(
        default=15.0, gt=0, description="the `tableau` lease: a dead leader is replaced within it"
    )


class RetentionSettings(_Strict):
    """How long finished work is kept; `days: null` keeps everything."""

    days: float | None = Field(default=30.0, gt=0, description="prune finished work older than")


# The one place the worker's defaults are written: RetryPolicy, RefreshQueue, LineageQueue,
# TableauClient.wait and the `refresh` command's --timeout take theirs from here.
WORKER_DEFAULTS = WorkerSettings()


class DbtCloudSettings(_Strict):
    """The dbt Cloud Admin API v2: lineage reads run artifacts, reconciliation lists runs."""

    # Regional cells (ACCOUNT_PREFIX.us1.dbt.com, ...) and single-tenant hosts reject
    # tokens at the default URL: use the account's own access URL.
    access_url: str = "https://cloud.getdbt.com"
    account_id: int = Field(gt=0)
    api_token: SecretStr
    reconcile_seconds: float | None = Field(
        default=None, gt=0, description="poll for finished runs this often; absent = never"
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_reconcile_is_none(cls, data: Any) -> Any:
        """`reconcile_seconds: "{{ env_var('R', '') }}"` switches reconciliation off."""
        if isinstance(data, dict) and data.get("reconcile_seconds") == "":
            data = {**data, "reconcile_seconds": None}
        return data

    @field_validator("access_url")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        url = urlsplit(value.strip())
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError("access_url must be an http:// or https:// URL")
        return value.strip().rstrip("/")

    @field_validator("api_token")
    @classmethod
    def _a_token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("api_token must not be empty")
        return value


class DbtSettings(_Strict):
    webhook_secrets: tuple[SecretStr, ...] = ()
    cloud: DbtCloudSettings | None = None
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="whole body to arrive within, else 408"
    )
    # Off by default: dbt's retries resend an event with its original timestamp.
    max_event_age_seconds: float | None = Field(
        default=None, gt=0, description="refuse signed events older than this (replay window)"
    )


NotifyTrigger = Literal["failed", "dead", "succeeded"]
NOTIFY_KINDS: tuple[str, ...] = ("slack", "teams", "webhook")


def _as_list(value: Any) -> Any:
    """`on: failed` means `on: [failed]`."""
    return [value] if isinstance(value, str) else value


class NotifyChannel(_Strict):
    """One place told about finished refreshes (notifier.py): exactly one of the three kinds.

    Every URL is a SecretStr: a Slack or Teams webhook URL is itself the
    credential (anyone holding it can post), so it is never logged or echoed.
    """

    slack: SecretStr | None = None  # a Slack incoming webhook
    teams: SecretStr | None = None  # a Microsoft Teams workflow webhook
    webhook: SecretStr | None = None  # a plain JSON POST (docs/notifications.md)
    on: Annotated[tuple[NotifyTrigger, ...], BeforeValidator(_as_list)] = ("failed", "dead")

    @model_validator(mode="after")
    def _one_url(self) -> NotifyChannel:
        given = [k for k in NOTIFY_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of slack, teams, webhook")
        url = urlsplit(self.url.strip())
        # The URL itself is never part of the message: it is the secret.
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"{given[0]}: not an http:// or https:// URL")
        if not self.on:
            raise ValueError("on: name at least one of failed, dead, succeeded")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in NOTIFY_KINDS if getattr(self, k) is not None)

    @property
    def url(self) -> str:
        secret: SecretStr = getattr(self, self.kind)
        return secret.get_secret_value().strip()


class Settings(_Strict):
    database_url: Annotated[str, AfterValidator(DatabaseUrl)] = DatabaseUrl("sqlite:///relay.db")
    listen: str = "127.0.0.1:8080"
    # Connections (or requests) `serve` handles at once; beyond, uvicorn answers 503 at once.
    limit_concurrency: int = Field(default=256, ge=1, description="open connections at most")
    admin_token: SecretStr | None = None
    dbt: DbtSettings = DbtSettings()
    tableau: TableauSettings
    rules: tuple[Rule, ...] = ()
    worker: WorkerSettings = WorkerSettings()
    notify: tuple[NotifyChannel, ...] = ()
    # Where people reach the dashboard: notifications link to the job there.
    public_url: str | None = None
    retention: RetentionSettings = RetentionSettings()

    @model_validator(mode="before")
    @classmethod
    def _empty_token_is_none(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {**data, **{k: None for k in ("admin_token", "public_url") if data.get(k) == ""}}
        return data

    @field_validator("public_url")
    @classmethod
    def _public_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlsplit(value.strip())
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError("public_url must be an http:// or https:// URL")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _unique_rule_names(self) -> Settings:
        names = [r.name for r in self.rules]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _lineage_needs_dbt_cloud(self) -> Settings:
        if self.dbt.cloud is None and (asking := [r.name for r in self.rules if r.lineage]):
            raise ValueError(
                f"rules {', '.join(asking)} refresh by lineage: set dbt.cloud (the Admin API"
                " reads the run's artifacts)"
            )
        return self


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config PATH, else $DBT_TABLEAU_RELAY_CONFIG, else ./relay.yml."""
    return Path(explicit or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, substitute and validate the config file; any problem is a ConfigError."""
    file = config_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    return parse_settings(text, environ if environ is not None else os.environ, source=str(file))


def parse_settings(text: str, environ: Mapping[str, str], source: str = "config") -> Settings:
    try:
        raw = yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a YAML mapping")
    data = substitute_env(raw, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid:\n{_describe(exc)}") from None


def substitute_env(value: Any, environ: Mapping[str, str], where: str = "") -> Any:
    """Replace every `{{ env_var(...) }}` in the strings of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: substitute_env(v, environ, _join(where, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, environ, _join(where, i)) for i, v in enumerate(value)]
    if isinstance(value, str):
        return _ENV_VAR.sub(lambda m: _lookup(m, environ, where), value)
    return value


def _lookup(match: re.Match[str], environ: Mapping[str, str], where: str) -> str:
    name, default = match["name"], match["default"]
    if name in environ:
        return environ[name]
    file_var = f"{name}{FILE_SUFFIX}"
    if file_var in environ:
        return _read_secret_file(file_var, environ[file_var], where)
    if default is not None:
        return default
    raise ConfigError(f"{where}: environment variable {name} is not set and has no default")


def _read_secret_file(variable: str, path: str, where: str) -> str:
    """The text of the file `variable` names (Docker and Kubernetes secrets), newlines trimmed.

    Errors name the variable and the path, never the content: it is a secret.
    """
    problem = f"{where}: cannot read the file {variable} names ({path!r})"
    try:
        with open(path, "rb") as file:
            # Bounded: a variable pointing at /dev/zero must not fill the memory.
            raw = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{problem}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{problem}: larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # its message quotes a byte of the secret: leave it out
        raise ConfigError(f"{problem}: not UTF-8 text") from None
    # `echo secret > file` and editors add a final newline that is not part of the secret.
    return text.rstrip("\r\n")


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)
