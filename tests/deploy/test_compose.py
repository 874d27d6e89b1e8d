"""deploy/compose.yaml, deploy/relay.yml and deploy/Caddyfile agree with each other.

check-jsonschema validates compose.yaml against the Compose Specification
(`make lint-deploy`); these tests check what `docker compose config` cannot:
that the relays' config loads with the relay's own loader from the secrets
compose mounts, and that the proxy sends to exactly the relay services.
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from deploy_files import (
    DEPLOY,
    DOCKERFILE,
    dockerfile_env,
    dockerfile_instructions,
    image,
    listen_port,
    load_yaml,
    settings_with_files,
    variables_of,
)
from sqlalchemy.engine import make_url

from dbt_tableau_relay.config import Settings

COMPOSE = DEPLOY / "compose.yaml"
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")
DOTENV = {"TABLEAU_SERVER_URL": "https://tableau.example.com", "TABLEAU_TOKEN_NAME": "relay"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def relays(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith("dbt-tableau-relay:")
    }


def interpolated(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} from a test .env (else empty)."""
    return INTERPOLATION.sub(lambda m: DOTENV.get(m.group(1), ""), value)


def relay_settings(service: dict[str, Any], compose: dict[str, Any], tmp: Path) -> Settings:
    """deploy/relay.yml as this service's relay reads it, one made-up value per secret."""
    environ = {k: interpolated(str(v)) for k, v in service["environment"].items()}
    files = {f"/run/secrets/{name}": f"{name}-value" for name in service["secrets"]}
    return settings_with_files((DEPLOY / "relay.yml").read_text(), environ, files, tmp)


def test_two_serve_replicas_of_the_projects_image(compose: dict[str, Any]) -> None:
    services = relays(compose)
    assert len(services) == 2
    for service in services.values():
        assert service["image"] == image()
        assert service["command"] == ["serve"]
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert "ports" not in service, "only the proxy is reachable from outside"


def test_postgres_15_is_healthy_before_a_relay_starts(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert "pg_isready" in postgres["healthcheck"]["test"]
    for service in relays(compose).values():
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_secrets_are_files_each_service_is_given(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    for name, service in compose["services"].items():
        given = set(service.get("secrets", []))
        assert given <= set(declared), name
        for variable, value in service.get("environment", {}).items():
            if variable.endswith("_FILE"):
                assert value.removeprefix("/run/secrets/") in given, f"{name}: {variable}"
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/"), "kept out of the repository"


def test_every_variable_relay_yml_needs_is_provided(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "relay.yml").read_text()
    needed = [name for name, has_default in variables_of(text).items() if not has_default]
    for name, service in relays(compose).items():
        environment = service["environment"]
        for variable in needed:
            assert variable in environment or f"{variable}_FILE" in environment, (name, variable)


def test_relay_yml_loads_from_the_mounted_secrets(compose: dict[str, Any], tmp_path: Path) -> None:
    service = next(iter(relays(compose).values()))
    settings = relay_settings(service, compose, tmp_path)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "relay_admin_token-value"
    assert settings.dbt.webhook_secrets[0].get_secret_value() == "dbt_webhook_secret-value"
    assert settings.tableau.token_secret is not None
    assert settings.tableau.token_secret.get_secret_value() == "tableau_token_secret-value"
    assert settings.tableau.server_url == DOTENV["TABLEAU_SERVER_URL"]


def test_relays_listen_on_every_interface_with_an_admin_token(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """On 0.0.0.0 without admin_token the dashboard and admin API would answer 403."""
    settings = relay_settings(next(iter(relays(compose).values())), compose, tmp_path)
    assert ip_address(settings.listen.rpartition(":")[0]).is_unspecified
    assert settings.admin_token is not None
    assert "RELAY_ADMIN_TOKEN" in variables_of((DEPLOY / "relay.yml").read_text())
    assert not variables_of((DEPLOY / "relay.yml").read_text())["RELAY_ADMIN_TOKEN"], (
        "no default: a missing token stops the start instead of opening nothing"
    )


def test_relays_reach_the_compose_database(compose: dict[str, Any], tmp_path: Path) -> None:
    settings = relay_settings(next(iter(relays(compose).values())), compose, tmp_path)
    url = make_url(settings.database_url)
    postgres = compose["services"]["postgres"]
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "postgres"
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.database == postgres["environment"]["POSTGRES_DB"]
    assert url.password == "postgres_password-value", "the password is the database's secret"
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_relay_yml_is_mounted_where_the_image_looks(compose: dict[str, Any]) -> None:
    config = dockerfile_env(dockerfile_instructions(DOCKERFILE.read_text()))
    for service in relays(compose).values():
        source, target, mode = service["volumes"][0].split(":")
        assert (DEPLOY / source).is_file()
        assert target == config["DBT_TABLEAU_RELAY_CONFIG"]
        assert mode == "ro"


def test_the_proxy_sends_to_exactly_the_relays(compose: dict[str, Any], tmp_path: Path) -> None:
    port = listen_port(relay_settings(next(iter(relays(compose).values())), compose, tmp_path))
    expected = sorted(f"{name}:{port}" for name in relays(compose))
    proxy = compose["services"]["proxy"]
    assert sorted(proxy["environment"]["RELAY_UPSTREAMS"].split()) == expected
    assert sorted(caddy_default("RELAY_UPSTREAMS").split()) == expected
    assert proxy["image"].startswith("caddy:")
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert "caddy-data:/data" in proxy["volumes"], "certificates survive a restart"
    assert set(proxy["depends_on"]) == set(relays(compose))


def caddy_default(variable: str) -> str:
    found = re.search(r"\{\$" + variable + r":([^}]*)\}", (DEPLOY / "Caddyfile").read_text())
    assert found, variable
    return found.group(1)
