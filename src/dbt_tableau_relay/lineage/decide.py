"""Refresh or skip: the decision rule, over the dbt nodes a Tableau item depends on.

An item is refreshed when at least one of the nodes it depends on was rebuilt
successfully in the run's build step and none of them errored. Skipped is not
errored; a node the build step did not run is "not run". A view or an
ephemeral model stands for the models beneath it: the item depends on those
too, down to the tables, incrementals, seeds, snapshots and sources, so data
seen through a view counts as changed when a table under it was rebuilt.
Tests are never upstream nodes of an item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from .artifacts import Manifest, Node
from .exposures import ExposureTarget, TableauRef
from .model import Action, Decision, NodeVerdict, TableauItem, normalize_relation
from .steps import BuildResult

NOT_RUN = "not run"
REBUILT = frozenset({"success"})
# A microbatch model's "partial success" had batches fail: its data is incomplete.
ERRORED = frozenset({"error", "runtime error", "partial success"})
_PASS_THROUGH = frozenset({"view", "ephemeral"})  # no data of their own
# What a Tableau table can be in dbt: the nodes with a relation of their own.
_RELATIONAL = frozenset({"model", "seed", "snapshot", "source"})
_NAMES_SHOWN = 3

Source = Literal["exposures", "tableau_lineage"]


def upstream_nodes(manifest: Manifest, unique_ids: Iterable[str]) -> tuple[str, ...]:
    """The nodes an item's data comes from, in breadth-first order.

    The given nodes, with each view and ephemeral expanded through to the
    nodes beneath it; a view stays in the list (it is itself rebuilt, and can
    error), an ephemeral does not (it is never run, so it has no status).
    Tests are dropped; an id the manifest lacks is kept as it is.
    """
    queue, seen, found = deque(unique_ids), set[str](), list[str]()
    while queue:
        uid = queue.popleft()
        if uid in seen:
            continue
        seen.add(uid)
        node = manifest.node(uid)
        if node is not None and node.resource_type == "test":
            continue
        if node is not None and _passes_through(node):
            queue.extend(node.depends_on)
            if node.materialized == "ephemeral":
                continue
        found.append(uid)
    return tuple(found)


def decide(
    item: TableauItem,
    upstream_unique_ids: Iterable[str],
    manifest: Manifest,
    build: BuildResult,
    *,
    source: Source = "exposures",
) -> Decision:
    """Refresh or skip `item`, whose data comes from `upstream_unique_ids`."""
    verdicts = [
        NodeVerdict(uid, build.status(uid) or NOT_RUN)
        for uid in upstream_nodes(manifest, upstream_unique_ids)
    ]
    ordered = tuple(sorted(verdicts, key=_rank))  # stable: the deciding nodes first
    action, reason = _rule(ordered)
    return Decision(item=item, action=action, nodes=ordered, source=source, reason=reason)


def decide_exposures(
    targets: Sequence[ExposureTarget],
    items: Mapping[TableauRef, TableauItem],
    manifest: Manifest,
    build: BuildResult,
) -> list[Decision]:
    """One decision per resolved Tableau item, over all exposures that point at it.

    `items` maps each target's reference to the item the caller resolved it
    to through Tableau; a target whose reference is missing from it is left
    out (the caller reports it as unresolved).
    """
    depends: dict[TableauItem, list[str]] = {}
    for target in targets:
        item = items.get(target.ref)
        if item is not None:
            depends.setdefault(item, []).extend(target.depends_on)
    return [decide(item, deps, manifest, build) for item, deps in depends.items()]


def relation_index(manifest: Manifest) -> dict[str, tuple[str, ...]]:
    """Normalized relation name -> the models, seeds, snapshots and sources on it."""
    index: dict[str, list[str]] = {}
    for node in (*manifest.nodes.values(), *manifest.sources.values()):
        if node.resource_type in _RELATIONAL and node.relation_name:
            index.setdefault(normalize_relation(node.relation_name), []).append(node.unique_id)
    return {relation: tuple(sorted(uids)) for relation, uids in index.items()}


def nodes_for_relations(manifest: Manifest, relations: Iterable[str]) -> tuple[str, ...]:
    """The dbt nodes behind a Tableau item's upstream tables; tables dbt lacks are left out.

    Names are matched normalized (`model.normalize_relation`); a name without
    its database (`schema.table`) matches every relation that ends with it.
    """
    index = relation_index(manifest)
    found: dict[str, None] = {}  # an ordered set
    for relation in relations:
        name = normalize_relation(relation)
        if name in index:
            found.update(dict.fromkeys(index[name]))
        elif name and name.count(".") < 2:
            for full in sorted(index):
                if full.endswith("." + name):
                    found.update(dict.fromkeys(index[full]))
    return tuple(found)


def touched_relations(manifest: Manifest, build: BuildResult) -> set[str]:
    """Normalized relations of the nodes the build step ran, and of the views over them.

    Every relational node run_results lists counts, errored and skipped ones
    too, so that the Tableau items behind them are found and explained. A
    view over such a node counts as well: Tableau reads the view, not the
    table the run rebuilt beneath it.
    """
    ran = {uid for uid in build.statuses if _relational(manifest.node(uid))}
    relations = {_relation(manifest.node(uid)) for uid in ran}
    views = (n for n in manifest.nodes.values() if _passes_through(n) and n.relation_name)
    for view in views:
        if ran.intersection(upstream_nodes(manifest, [view.unique_id])):
            relations.add(_relation(view))
    relations.discard("")
    return relations


def _passes_through(node: Node) -> bool:
    return node.resource_type == "model" and node.materialized in _PASS_THROUGH


def _relational(node: Node | None) -> bool:
    return node is not None and node.resource_type in _RELATIONAL


def _relation(node: Node | None) -> str:
    return normalize_relation(node.relation_name) if node and node.relation_name else ""


def _rank(verdict: NodeVerdict) -> int:
    if verdict.status in ERRORED:
        return 0
    return 1 if verdict.status in REBUILT else 2


def _rule(verdicts: Sequence[NodeVerdict]) -> tuple[Action, str]:
    errored = [v for v in verdicts if v.status in ERRORED]
    rebuilt = [v for v in verdicts if v.status in REBUILT]
    others = [v for v in verdicts if v.status not in ERRORED | REBUILT]
    if not verdicts:
        return "skip", "no dbt node upstream of it"
    if errored:
        return "skip", f"{_names(errored)} errored in the build step"
    if not rebuilt:
        return "skip", f"nothing upstream was rebuilt ({_statuses(others)})"
    reason = f"{_names(rebuilt)} rebuilt"
    skipped = [v for v in others if v.status == "skipped"]
    if skipped:
        reason += f"; {_names(skipped)} skipped, which is not an error"
    return "refresh", reason


def _names(verdicts: Sequence[NodeVerdict]) -> str:
    names = [v.name for v in verdicts[:_NAMES_SHOWN]]
    more = len(verdicts) - len(names)
    return ", ".join(names) + (f" and {more} more" if more else "")


def _statuses(verdicts: Sequence[NodeVerdict]) -> str:
    shown = [f"{v.name}: {v.status}" for v in verdicts[:_NAMES_SHOWN]]
    more = len(verdicts) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")
