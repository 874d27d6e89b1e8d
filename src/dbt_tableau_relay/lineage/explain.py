"""Decisions as `explain` lines and as JSON, and back from the JSON stored with a job.

refresh  Finance/Revenue        orders: success
skip     Sales/Pipeline Health  revenue_daily: error, stg_orders: success
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

from ..errors import LineageError
from .model import Action, Decision, ItemKind, NodeVerdict, TableauItem

_SOURCES = ("exposures", "tableau_lineage")
_ACTION_WIDTH = max(len(a) for a in get_args(Action))


def ordered(decisions: Iterable[Decision]) -> list[Decision]:
    """The order explain shows: by path (case-insensitive), then kind, LUID and source."""
    return sorted(
        decisions,
        key=lambda d: (d.item.path.casefold(), d.item.kind, d.item.luid, d.source),
    )


def explain_lines(decisions: Iterable[Decision], *, reasons: bool = False) -> list[str]:
    """One aligned line per decision: action, Project/Name, then each node and its status."""
    rows = ordered(decisions)
    width = max((len(d.item.path) for d in rows), default=0)
    lines = []
    for d in rows:
        line = f"{d.action:<{_ACTION_WIDTH}}  {d.item.path:<{width}}  {_nodes(d.nodes)}"
        lines.append(f"{line}  ({d.reason})" if reasons and d.reason else line.rstrip())
    return lines


def to_json(decisions: Iterable[Decision]) -> list[dict[str, Any]]:
    """JSON-ready dicts, in explain's order."""
    return [_decision_json(d) for d in ordered(decisions)]


def from_json(data: object) -> list[Decision]:
    """What `to_json` made, read back; a malformed document raises LineageError."""
    if not isinstance(data, list):
        raise LineageError("an explanation is a JSON list of decisions")
    return [_decision(i, entry) for i, entry in enumerate(data)]


def _nodes(nodes: Sequence[NodeVerdict]) -> str:
    if not nodes:
        return "(no dbt nodes)"
    return ", ".join(f"{n.name}: {n.status}" for n in nodes)


def _decision_json(d: Decision) -> dict[str, Any]:
    return {
        "kind": d.item.kind,
        "luid": d.item.luid,
        "name": d.item.name,
        "project": d.item.project,
        "path": d.item.path,
        "action": d.action,
        "source": d.source,
        "reason": d.reason,
        "nodes": [{"unique_id": n.unique_id, "name": n.name, "status": n.status} for n in d.nodes],
    }


def _decision(index: int, entry: object) -> Decision:
    where = f"decision {index}"
    raw = _object(entry, where)
    kind: ItemKind = _choice(raw, "kind", get_args(ItemKind), where)
    action: Action = _choice(raw, "action", get_args(Action), where)
    project = raw.get("project")
    if project is not None and not isinstance(project, str):
        raise LineageError(f"{where}: project is not a string")
    nodes = raw.get("nodes", [])
    if not isinstance(nodes, list):
        raise LineageError(f"{where}: nodes is not a list")
    return Decision(
        item=TableauItem(kind, _text(raw, "luid", where), _text(raw, "name", where), project),
        action=action,
        nodes=tuple(_verdict(f"{where} node {i}", n) for i, n in enumerate(nodes)),
        source=_choice(raw, "source", _SOURCES, where),
        reason=str(raw.get("reason") or ""),
    )


def _verdict(where: str, entry: object) -> NodeVerdict:
    raw = _object(entry, where)
    return NodeVerdict(_text(raw, "unique_id", where), _text(raw, "status", where))


def _object(entry: object, where: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise LineageError(f"{where} is not an object")
    return entry


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise LineageError(f"{where}: {key} is missing or not a string")
    return value


def _choice(raw: Mapping[str, Any], key: str, allowed: tuple[Any, ...], where: str) -> Any:
    value = raw.get(key)
    if value not in allowed:
        raise LineageError(f"{where}: {key} is {value!r}, not one of {', '.join(allowed)}")
    return value
