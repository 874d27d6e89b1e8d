"""Read the deployment files as their tools would: Dockerfile, YAML manifests, a systemd unit.

The linters (`make lint-deploy`: hadolint, yamllint, kubernetes-validate,
check-jsonschema) check each file's syntax and schema; the tests check what
no linter knows, that the files agree with each other and with the relay.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dbt_tableau_relay.config import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
UNIT = DEPLOY / "systemd" / "dbt-tableau-relay.service"
ENV_VAR = re.compile(r"""env_var\(\s*['"]([^'"]+)['"]\s*(,\s*['"][^'"]*['"]\s*)?\)""")


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def image() -> str:
    """The image name every manifest runs: the project's version as its tag."""
    return f"dbt-tableau-relay:{version()}"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# -- Dockerfile ------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """`["a", "b"]` as a list; a shell-form instruction is an error here."""
        parsed = json.loads(self.arguments)
        assert isinstance(parsed, list), f"{self.keyword} is not in exec form"
        return [str(item) for item in parsed]


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, comments dropped and continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        lines.append(pending)
        pending = ""
    return [Instruction(*_split_instruction(line)) for line in lines]


def _split_instruction(line: str) -> tuple[str, str]:
    keyword, _, arguments = line.partition(" ")
    return keyword.upper(), arguments.strip()


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    """ENV KEY=VALUE ... pairs (the only form the Dockerfile uses)."""
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(instruction.arguments))
    return env


# -- relay.yml -------------------------------------------------------------------


def variables_of(config_text: str) -> dict[str, bool]:
    """Each env_var() the config's values read (comments aside), and whether it has a default."""
    return {
        m.group(1): m.group(2) is not None
        for value in _strings(yaml.safe_load(config_text))
        for m in ENV_VAR.finditer(value)
    }


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def settings_with_files(
    config_text: str, environ: Mapping[str, str], files: Mapping[str, str], tmp: Path
) -> Settings:
    """The relay's own loader, `files` (container path: content) put under `tmp`.

    The manifests name container paths such as /run/secrets/x; each `*_FILE`
    variable is pointed at the same file under `tmp`, so the relay reads the
    secret through the same `_FILE` route as in the container.
    """
    local: dict[str, str] = {}
    for container_path, content in files.items():
        path = tmp / container_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")
        local[container_path] = str(path)
    env = {
        name: local[value] if name.endswith("_FILE") and value in local else value
        for name, value in environ.items()
    }
    missing = [v for n, v in environ.items() if n.endswith("_FILE") and v not in local]
    assert not missing, f"*_FILE variables name files nothing provides: {missing}"
    return parse_settings(config_text, env, source="deploy")


def listen_port(settings: Settings) -> int:
    return int(settings.listen.rpartition(":")[2])


# -- systemd ---------------------------------------------------------------------


def unit_directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every line of a unit file, repeated keys kept in order."""
    section = ""
    directives: list[tuple[str, str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        directives.append((section, key.strip(), value.strip()))
    return directives
