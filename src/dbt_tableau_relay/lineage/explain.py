"""Decisions as `explain` lines and as JSON (placeholder until the lineage helper lands)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbt_tableau_relay.lineage.model import Decision


def to_json(decisions: Sequence[Decision]) -> list[dict[str, Any]]:
    return [
        {
            "kind": d.item.kind,
            "luid": d.item.luid,
            "path": d.item.path,
            "action": d.action,
            "source": d.source,
            "reason": d.reason,
            "nodes": [
                {"unique_id": n.unique_id, "name": n.name, "status": n.status} for n in d.nodes
            ],
        }
        for d in decisions
    ]
