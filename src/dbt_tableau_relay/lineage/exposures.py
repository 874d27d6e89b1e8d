"""dbt exposures of type dashboard that point at a Tableau workbook or data source.

An exposure names its Tableau item one of two ways:
- by LUID in `meta` (or `config.meta`): `tableau_workbook_id` or
  `tableau_datasource_id`; this wins over any URL;
- by its Tableau URL, `https://HOST/#/site/SITE/workbooks/1234/views` or
  `.../#/site/SITE/datasources/567` (`.../#/workbooks/1234` on the Default
  site). The number in it is Tableau's repository id, not a LUID: the caller
  resolves it through Tableau (REST or Metadata API) on that site.
Other exposure types, and URLs with no such path (a view URL, a Looker
link), are not candidates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .artifacts import Exposure, Manifest
from .model import ItemKind

META_KEYS: dict[str, ItemKind] = {
    "tableau_workbook_id": "workbook",
    "tableau_datasource_id": "datasource",
}
_URL_KINDS: dict[str, ItemKind] = {"workbooks": "workbook", "datasources": "datasource"}
# The route after "#": "/site/SITE/workbooks/1234/views", "/datasources/567" (Default site).
_ROUTE = re.compile(
    r"^/(?:site/(?P<site>[^/?]+)/)?(?P<kind>workbooks|datasources)/(?P<id>\d+)(?:[/?]|$)"
)
_LUID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class ByLuid:
    """A Tableau item named by its LUID: refresh it as it is."""

    kind: ItemKind
    luid: str


@dataclass(frozen=True, slots=True)
class ByUrlId:
    """A Tableau item named by the numeric id in its URL: resolve it to a LUID first."""

    kind: ItemKind
    site: str  # the site's content URL as in the address; "" for the Default site
    id: int
    url: str


TableauRef = ByLuid | ByUrlId


@dataclass(frozen=True, slots=True)
class ExposureTarget:
    """One Tableau item an exposure points at, and the dbt nodes it depends on."""

    unique_id: str  # exposure.<package>.<name>
    name: str
    label: str | None
    ref: TableauRef
    depends_on: tuple[str, ...]


def parse_tableau_url(url: str) -> ByUrlId | None:
    """The (site, kind, id) a Tableau workbook or data source URL names, if it names one."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    match = _ROUTE.match(parts.fragment)
    if match is None:
        return None
    return ByUrlId(
        kind=_URL_KINDS[match["kind"]],
        site=unquote(match["site"] or ""),
        id=int(match["id"]),
        url=url,
    )


def tableau_refs(exposure: Exposure) -> tuple[TableauRef, ...] | str | None:
    """What a dashboard exposure points at in Tableau.

    A tuple of references (a LUID per meta key set, else the URL's), None
    when nothing in it is about Tableau, or a string saying why a Tableau
    hint in it cannot be used (a meta value that is not a LUID).
    """
    if exposure.type != "dashboard":
        return None
    luids = _meta_refs(exposure.meta)
    if isinstance(luids, str) or luids:
        return luids
    by_url = parse_tableau_url(exposure.url) if exposure.url else None
    return (by_url,) if by_url else None


def tableau_exposures(manifest: Manifest) -> list[ExposureTarget]:
    """Every (exposure, Tableau item) candidate of the manifest, by exposure id."""
    targets: list[ExposureTarget] = []
    for uid in sorted(manifest.exposures):
        exposure = manifest.exposures[uid]
        refs = tableau_refs(exposure)
        if isinstance(refs, tuple):
            targets.extend(_target(exposure, ref) for ref in refs)
    return targets


def ignored_exposures(manifest: Manifest) -> list[tuple[str, str]]:
    """(exposure id, why) for dashboard exposures whose Tableau meta is unusable."""
    found = ((uid, tableau_refs(manifest.exposures[uid])) for uid in sorted(manifest.exposures))
    return [(uid, refs) for uid, refs in found if isinstance(refs, str)]


def _meta_refs(meta: Mapping[str, Any]) -> tuple[ByLuid, ...] | str:
    refs: list[ByLuid] = []
    for key, kind in META_KEYS.items():
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not _LUID.match(value.strip()):
            return f"meta {key} is {value!r}, not a Tableau LUID (8-4-4-4-12 hex digits)"
        refs.append(ByLuid(kind=kind, luid=value.strip()))
    return tuple(refs)


def _target(exposure: Exposure, ref: TableauRef) -> ExposureTarget:
    return ExposureTarget(
        unique_id=exposure.unique_id,
        name=exposure.name,
        label=exposure.label,
        ref=ref,
        depends_on=exposure.depends_on,
    )
