"""Typed readers of dbt's manifest.json and run_results.json: what lineage needs.

Our own small reader rather than dbt-artifacts-parser: that library validates
the whole file against one generated pydantic model per schema version (a
640 kB manifest is 500 macros lineage never reads), so a field dbt adds in a
minor release can fail a file we only need ten fields of. This reader takes
those fields, ignores every other one, and reads manifests v10-v12 and
run_results v4-v6 alike (checked against the real files in
tests/fixtures/dbt-artifacts/, made by dbt 1.6, 1.7 and 1.11). A file that is
not the artifact expected fails with `ArtifactError`, saying what it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ArtifactError

ArtifactKind = Literal["manifest", "run-results"]

# metadata.dbt_schema_version: "https://schemas.getdbt.com/dbt/manifest/v12.json"
_SCHEMA = re.compile(r"/dbt/(?P<kind>[a-z-]+)/v(?P<version>\d+)\.json$")


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """An artifact's `metadata`: which schema, which dbt, which invocation."""

    kind: ArtifactKind
    version: int  # the schema version: 12 for manifest/v12.json
    dbt_version: str
    invocation_id: str | None = None
    generated_at: str | None = None


@dataclass(frozen=True, slots=True)
class Node:
    """A manifest node (model, seed, snapshot, test...) or a source."""

    unique_id: str
    resource_type: str  # model | seed | snapshot | test | source | analysis | operation ...
    name: str
    relation_name: str | None = None  # '"db"."schema"."table"'; None for ephemerals and tests
    materialized: str | None = None  # config.materialized: table | view | ephemeral | ...
    depends_on: tuple[str, ...] = ()  # depends_on.nodes: unique ids


@dataclass(frozen=True, slots=True)
class Exposure:
    """A manifest exposure; `meta` is `meta` merged with `config.meta` (config wins)."""

    unique_id: str
    name: str
    type: str  # dashboard | notebook | analysis | ml | application
    url: str | None = None
    label: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Manifest:
    info: ArtifactInfo
    nodes: Mapping[str, Node] = field(default_factory=dict, hash=False)
    sources: Mapping[str, Node] = field(default_factory=dict, hash=False)
    exposures: Mapping[str, Exposure] = field(default_factory=dict, hash=False)

    def node(self, unique_id: str) -> Node | None:
        """A node or a source by unique id; None when the manifest has neither."""
        return self.nodes.get(unique_id) or self.sources.get(unique_id)


@dataclass(frozen=True, slots=True)
class NodeResult:
    unique_id: str
    status: str  # lower case: success | error | skipped | pass | fail | warn | no-op ...


@dataclass(frozen=True, slots=True)
class RunResults:
    info: ArtifactInfo
    which: str | None  # args.which: build | run | seed | snapshot | test | generate ...
    invocation_command: str | None  # args.invocation_command (dbt >= 1.5): "dbt build ..."
    results: tuple[NodeResult, ...] = ()

    @property
    def invocation_id(self) -> str | None:
        return self.info.invocation_id

    def statuses(self) -> dict[str, str]:
        """unique_id -> status; dbt lists each node once per invocation."""
        return {r.unique_id: r.status for r in self.results}


def parse_manifest(data: Mapping[str, Any] | bytes | str) -> Manifest:
    """A manifest.json, raw or already parsed, read into a `Manifest`."""
    doc = _document(data, "manifest.json")
    info = _info(doc, "manifest")
    return Manifest(
        info=info,
        nodes={uid: _node(uid, raw) for uid, raw in _entries(doc, "nodes")},
        sources={uid: _node(uid, raw) for uid, raw in _entries(doc, "sources")},
        exposures={uid: _exposure(uid, raw) for uid, raw in _entries(doc, "exposures")},
    )


def parse_run_results(data: Mapping[str, Any] | bytes | str) -> RunResults:
    """A run_results.json, raw or already parsed, read into `RunResults`."""
    doc = _document(data, "run_results.json")
    info = _info(doc, "run-results")
    args = _section(doc, "args", "args")
    results = doc.get("results")
    if not isinstance(results, list):
        raise ArtifactError("run_results.json: results is not a list")
    return RunResults(
        info=info,
        which=_opt_str(args.get("which"), "args.which"),
        invocation_command=_opt_str(args.get("invocation_command"), "args.invocation_command"),
        results=tuple(_result(i, raw) for i, raw in enumerate(results)),
    )


def load_manifest(path: str | Path) -> Manifest:
    return parse_manifest(_read(path))


def load_run_results(path: str | Path) -> RunResults:
    return parse_run_results(_read(path))


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _document(data: Mapping[str, Any] | bytes | str, what: str) -> Mapping[str, Any]:
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ArtifactError(f"{what} is not JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise ArtifactError(f"{what} is not a JSON object")
    return data


def _info(doc: Mapping[str, Any], expected: ArtifactKind) -> ArtifactInfo:
    meta = doc.get("metadata")
    schema = meta.get("dbt_schema_version") if isinstance(meta, Mapping) else None
    match = _SCHEMA.search(schema) if isinstance(schema, str) else None
    if not isinstance(meta, Mapping) or match is None:
        raise ArtifactError(
            f"not a dbt {expected} artifact: no metadata.dbt_schema_version "
            "(https://schemas.getdbt.com/dbt/<kind>/vN.json)"
        )
    kind, version = match["kind"], int(match["version"])
    if kind != expected:
        raise ArtifactError(f"expected a dbt {expected} artifact, got {kind} v{version}")
    return ArtifactInfo(
        kind=expected,
        version=version,
        dbt_version=_opt_str(meta.get("dbt_version"), "metadata.dbt_version") or "",
        invocation_id=_opt_str(meta.get("invocation_id"), "metadata.invocation_id"),
        generated_at=_opt_str(meta.get("generated_at"), "metadata.generated_at"),
    )


def _entries(doc: Mapping[str, Any], key: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The (unique_id, object) pairs of a top-level dict such as `nodes`."""
    section = _section(doc, key, key)
    return [(str(uid), _mapping(raw, f"{key}[{uid!r}]")) for uid, raw in section.items()]


def _node(uid: str, raw: Mapping[str, Any]) -> Node:
    where = f"node {uid!r}"
    config = _section(raw, "config", f"{where} config")
    return Node(
        unique_id=uid,
        resource_type=_str(raw.get("resource_type"), f"{where} resource_type"),
        name=_str(raw.get("name"), f"{where} name"),
        relation_name=_opt_str(raw.get("relation_name"), f"{where} relation_name"),
        materialized=_opt_str(config.get("materialized"), f"{where} config.materialized"),
        depends_on=_depends_on(raw, where),
    )


def _exposure(uid: str, raw: Mapping[str, Any]) -> Exposure:
    where = f"exposure {uid!r}"
    config = _section(raw, "config", f"{where} config")
    # dbt >= 1.10 copies config.meta into meta; 1.6-1.9 keep each where it was written.
    meta = {
        **_section(raw, "meta", f"{where} meta"),
        **_section(config, "meta", f"{where} config.meta"),
    }
    return Exposure(
        unique_id=uid,
        name=_str(raw.get("name"), f"{where} name"),
        type=_str(raw.get("type"), f"{where} type"),
        url=_opt_str(raw.get("url"), f"{where} url"),
        label=_opt_str(raw.get("label"), f"{where} label"),
        meta=meta,
        depends_on=_depends_on(raw, where),
    )


def _result(index: int, raw: object) -> NodeResult:
    where = f"results[{index}]"
    entry = _mapping(raw, where)
    status = _str(entry.get("status"), f"{where} status")
    return NodeResult(
        unique_id=_str(entry.get("unique_id"), f"{where} unique_id"), status=status.lower()
    )


def _depends_on(raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    # Seeds and sources carry no depends_on.nodes (seeds: only `macros`).
    deps = _section(raw, "depends_on", f"{where} depends_on")
    nodes = deps.get("nodes", [])
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise ArtifactError(f"{where} depends_on.nodes: expected a list of unique ids")
    return tuple(nodes)


def _section(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """raw[key] as an object; absent or null is empty (dbt omits or nulls empty ones)."""
    value = raw.get(key)
    return {} if value is None else _mapping(value, where)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ArtifactError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ArtifactError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: object, where: str) -> str | None:
    return None if value is None else _str(value, where)
