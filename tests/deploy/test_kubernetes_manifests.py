"""deploy/kubernetes/: the manifests agree with each other, with the image and with the relay.

kubernetes-validate checks each against Kubernetes' own schemas
(`make lint-deploy`); these tests check the references between them: probes
on the relay's paths and port, the Service's target, the ConfigMap's relay.yml
loading with the relay's own loader from the Secret's files, non-root.
"""

from __future__ import annotations

import posixpath
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from deploy_files import (
    DOCKERFILE,
    KUBERNETES,
    dockerfile_env,
    dockerfile_instructions,
    image,
    listen_port,
    load_yaml,
    settings_with_files,
    variables_of,
)

from dbt_tableau_relay.config import Settings

PLACEHOLDER = "CHANGE-ME"


def manifest(kind: str) -> dict[str, Any]:
    found = [m for p in sorted(KUBERNETES.glob("*.yaml")) if (m := load_yaml(p))["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)} manifests"
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return manifest("Deployment")


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = pod(deployment)["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def mount_of(deployment: dict[str, Any], volume_kind: str) -> tuple[str, dict[str, Any]]:
    """Where the container mounts the pod's one volume of this kind, and that volume."""
    volumes = {v["name"]: v for v in pod(deployment)["volumes"] if volume_kind in v}
    assert len(volumes) == 1, volume_kind
    name, volume = next(iter(volumes.items()))
    paths = [m["mountPath"] for m in container(deployment)["volumeMounts"] if m["name"] == name]
    assert len(paths) == 1
    return paths[0], volume


def relay_settings(deployment: dict[str, Any], tmp: Path) -> Settings:
    """The ConfigMap's relay.yml as the pod reads it, from the Secret's placeholder files."""
    config_dir, config_volume = mount_of(deployment, "configMap")
    secret_dir, secret_volume = mount_of(deployment, "secret")
    configmap = manifest("ConfigMap")
    secret = manifest("Secret")
    assert config_volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert secret_volume["secret"]["secretName"] == secret["metadata"]["name"]
    environ = {e["name"]: e["value"] for e in container(deployment)["env"]}
    config_path = environ.pop("DBT_TABLEAU_RELAY_CONFIG")
    assert posixpath.dirname(config_path) == config_dir
    text = configmap["data"][posixpath.basename(config_path)]
    files = {posixpath.join(secret_dir, key): value for key, value in secret["stringData"].items()}
    return settings_with_files(text, environ, files, tmp)


def test_kustomization_lists_every_manifest() -> None:
    resources = load_yaml(KUBERNETES / "kustomization.yaml")["resources"]
    others = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(resources) == sorted(others)


def test_two_replicas_of_the_projects_image_running_serve(deployment: dict[str, Any]) -> None:
    assert deployment["spec"]["replicas"] == 2
    relay = container(deployment)
    assert relay["image"] == image()
    assert relay["args"] == ["serve"]
    assert "command" not in relay, "the image's ENTRYPOINT is the relay"


def test_rolls_one_pod_at_a_time(deployment: dict[str, Any]) -> None:
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling == {"maxSurge": 1, "maxUnavailable": 0}
    assert manifest("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_selectors_match_the_pods(deployment: dict[str, Any]) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        manifest("Service")["spec"]["selector"],
        manifest("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()


@pytest.mark.parametrize(
    ("probe", "path"),
    [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")],
)
def test_probes_ask_the_relay_on_its_port(
    deployment: dict[str, Any], tmp_path: Path, probe: str, path: str
) -> None:
    relay = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in relay["ports"]}
    get = relay[probe]["httpGet"]
    assert get["path"] == path
    assert ports[get["port"]] == listen_port(relay_settings(deployment, tmp_path))


def test_service_targets_the_relays_port(deployment: dict[str, Any]) -> None:
    names = {p["name"] for p in container(deployment)["ports"]}
    for port in manifest("Service")["spec"]["ports"]:
        assert port["targetPort"] in names


def test_runs_non_root_on_a_read_only_root(deployment: dict[str, Any]) -> None:
    user, _, group = next(
        i.arguments for i in dockerfile_instructions(DOCKERFILE.read_text()) if i.keyword == "USER"
    ).partition(":")
    context = pod(deployment)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (int(user), int(group))
    own = container(deployment)["securityContext"]
    assert own["readOnlyRootFilesystem"] is True
    assert own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    tmp = [m for m in container(deployment)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp, "a writable /tmp on a read-only root"


def test_has_requests_and_a_memory_limit(deployment: dict[str, Any]) -> None:
    resources = container(deployment)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_config_loads_from_the_mounted_secret(deployment: dict[str, Any], tmp_path: Path) -> None:
    settings = relay_settings(deployment, tmp_path)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == PLACEHOLDER
    assert settings.dbt.webhook_secrets[0].get_secret_value() == PLACEHOLDER


def test_listens_on_every_interface_with_a_required_admin_token(
    deployment: dict[str, Any], tmp_path: Path
) -> None:
    """On 0.0.0.0 without admin_token the dashboard and admin API would answer 403."""
    settings = relay_settings(deployment, tmp_path)
    assert ip_address(settings.listen.rpartition(":")[0]).is_unspecified
    text = manifest("ConfigMap")["data"]["relay.yml"]
    assert variables_of(text)["RELAY_ADMIN_TOKEN"] is False, "no default: missing stops the start"


def test_the_secret_holds_placeholders_only() -> None:
    secret = manifest("Secret")
    assert "data" not in secret, "stringData: readable placeholders, never base64 values"
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER in value, key


def test_the_config_path_is_the_images_default(deployment: dict[str, Any]) -> None:
    environ = {e["name"]: e["value"] for e in container(deployment)["env"]}
    image_env = dockerfile_env(dockerfile_instructions(DOCKERFILE.read_text()))
    assert environ["DBT_TABLEAU_RELAY_CONFIG"] == image_env["DBT_TABLEAU_RELAY_CONFIG"]
