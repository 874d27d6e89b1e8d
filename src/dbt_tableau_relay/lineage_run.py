"""A run's lineage, end to end: fetch what `lineage/` needs, then let it decide.

The two API clients feed the pure lineage code: dbt Cloud's Admin API gives
the run's steps and the artifacts of its build steps (never the trailing
`dbt docs generate`'s), Tableau gives each item's project path (REST) and
which extracts read the tables the run touched (Metadata API). Nothing is
queued here: the worker turns the decisions into refresh jobs, and `explain`
prints them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence

from dbt_tableau_relay.config import LINEAGE_SOURCES, LineageSource, Settings, Target
from dbt_tableau_relay.dbt_cloud import DbtCloudClient
from dbt_tableau_relay.errors import (
    ConfigError,
    LineageError,
    NotFoundError,
    TransientDbtCloudError,
)
from dbt_tableau_relay.events import parse_event
from dbt_tableau_relay.lineage.artifacts import Manifest, parse_manifest, parse_run_results
from dbt_tableau_relay.lineage.decide import (
    decide,
    decide_exposures,
    nodes_for_relations,
    touched_relations,
)
from dbt_tableau_relay.lineage.explain import from_json
from dbt_tableau_relay.lineage.exposures import ByLuid, ByUrlId, TableauRef, tableau_exposures
from dbt_tableau_relay.lineage.model import Decision, TableauItem
from dbt_tableau_relay.lineage.steps import BuildResult, build_of, candidate_steps, is_build
from dbt_tableau_relay.reconcile import reconciled_body
from dbt_tableau_relay.rules import match_lineage
from dbt_tableau_relay.runs import lineage_jobs_of_run
from dbt_tableau_relay.store import Store
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.tableau_metadata import extract_items_reading, items_by_url_id

log = logging.getLogger(__name__)


class RunLineage:
    """Decides, for one dbt run, what each lineage source would refresh."""

    def __init__(self, dbt: DbtCloudClient, tableau: TableauClient, site: str) -> None:
        self.dbt = dbt
        self.tableau = tableau
        self.site = site

    def decide(self, run_id: str, sources: Sequence[LineageSource]) -> list[Decision]:
        """Every Tableau item the sources consider for the run, refresh or skip."""
        manifest, build = self.build(run_id)
        decisions: list[Decision] = []
        if "exposures" in sources:
            decisions += self._by_exposures(manifest, build)
        if "tableau_lineage" in sources:
            decisions += self._by_tableau_lineage(manifest, build)
        return merged(decisions)

    def build(self, run_id: str) -> tuple[Manifest, BuildResult]:
        """The run's manifest and its build steps' results combined."""
        run = self.dbt.get_run(run_id)
        if not run.is_complete:
            raise TransientDbtCloudError(f"dbt run {run_id} has not finished yet")
        steps = candidate_steps(run.steps)
        results = [
            (i, parse_run_results(self.dbt.artifact(run_id, "run_results.json", i))) for i in steps
        ]
        built = [i for i, r in results if is_build(r)]
        if not built:
            names = ", ".join(f"{s.index}: {s.name}" for s in run.steps) or "none"
            raise LineageError(f"dbt run {run_id} has no build/run/seed/snapshot step ({names})")
        manifest = parse_manifest(self.dbt.artifact(run_id, "manifest.json", built[-1]))
        return manifest, build_of(results)

    def _by_exposures(self, manifest: Manifest, build: BuildResult) -> list[Decision]:
        targets = tableau_exposures(manifest)
        items = self._resolve({t.ref for t in targets})
        return decide_exposures(targets, items, manifest, build)

    def _by_tableau_lineage(self, manifest: Manifest, build: BuildResult) -> list[Decision]:
        found = extract_items_reading(self.tableau, touched_relations(manifest, build))
        return [
            decide(
                self._with_path(item) or item,
                nodes_for_relations(manifest, tables),
                manifest,
                build,
                source="tableau_lineage",
            )
            for item, tables in found
        ]

    def _resolve(self, refs: Iterable[TableauRef]) -> dict[TableauRef, TableauItem]:
        """Each reference's item with its full project path; unknown ones are left out."""
        refs = list(refs)
        items: dict[TableauRef, TableauItem] = {}
        for ref in refs:
            if isinstance(ref, ByLuid) and (item := self._by_luid(ref.kind, ref.luid)):
                items[ref] = item
        for kind in ("workbook", "datasource"):
            by_url = [r for r in refs if isinstance(r, ByUrlId) and r.kind == kind]
            mine = [r for r in by_url if r.site.lower() == self.site.lower()]
            for ref in set(by_url) - set(mine):
                log.warning("lineage.other_site", extra={"url": ref.url, "site": ref.site})
            found = items_by_url_id(self.tableau, kind, [str(r.id) for r in mine])
            for ref in mine:
                if (item := found.get(str(ref.id))) is not None:
                    items[ref] = self._with_path(item) or item
        return items

    def _with_path(self, item: TableauItem) -> TableauItem | None:
        return self._by_luid(item.kind, item.luid)

    def _by_luid(self, kind: str, luid: str) -> TableauItem | None:
        try:
            found = self.tableau.resolve(Target.model_validate({f"{kind}_id": luid}))
        except NotFoundError:
            log.warning("lineage.item_missing", extra={"kind": kind, "luid": luid})
            return None
        return TableauItem(found.kind, found.luid, found.name, found.project_path or None)


def merged(decisions: Iterable[Decision]) -> list[Decision]:
    """One decision per item: an item both sources found is refreshed if either says so."""
    by_item: dict[tuple[str, str], Decision] = {}
    for d in decisions:
        key = (d.item.kind, d.item.luid)
        seen = by_item.get(key)
        if seen is None or (seen.action == "skip" and d.action == "refresh"):
            by_item[key] = d
    return list(by_item.values())


def stored_decisions(store: Store, run_id: str) -> list[Decision] | None:
    """What the worker decided for the run (every lineage rule's), or None if it has not yet."""
    jobs = [j for j in lineage_jobs_of_run(store, run_id) if j.state == "done"]
    if not jobs:
        return None
    return merged(d for j in jobs for d in from_json(json.loads(j.explanation or "[]")))


def live_decisions(settings: Settings, run_id: str) -> list[Decision]:
    """Decide now, from the APIs, as the worker would: for `explain` before or without an event."""
    cloud = settings.dbt.cloud
    if cloud is None:
        raise ConfigError("dbt.cloud is not set: lineage needs the Admin API")
    with DbtCloudClient(cloud) as dbt, TableauClient(settings.tableau) as tableau:
        run = dbt.get_run(run_id)
        event = parse_event(reconciled_body(run, "completed"))
        sources = {s for plan in match_lineage(settings.rules, event) for s in plan.sources}
        if not sources:
            raise LineageError(f"no lineage rule matches dbt run {run_id} (job {run.job_id})")
        ordered = [s for s in LINEAGE_SOURCES if s in sources]
        return RunLineage(dbt, tableau, settings.tableau.site).decide(run_id, ordered)
