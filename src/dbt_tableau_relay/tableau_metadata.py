"""The relay's Metadata API (GraphQL) client, on the Tableau client's one shared session.

What it adds to TSC's `server.metadata.query`, each for a trap of the real API:
- a `...Connection` query (one declaring `$first` and `$after`) comes back
  whole: every page is fetched, `after` the last one's `endCursor`;
- GraphQL errors answer HTTP 200, so the body is read: RATE_EXCEEDED is
  transient (backed off as retry.py decides, as are 429, 5xx and timeouts);
  a refused query (ACCESS_DENIED, FEATURE_DISABLED, a bad query) is
  permanent; MAX_PAGE_SIZE_EXCEEDED is harmless (paging goes on);
- partial data beside errors (Tableau's time limit, NODE_LIMIT_EXCEEDED,
  BACKFILL_RUNNING) is never used as if complete: the page is asked again in
  smaller pages, down to MIN_PAGE_SIZE, then backed off and, when that fails
  too, given up with PartialMetadataError (transient: the lineage job retries);
- calls go through `TableauClient.call`, so one PAT keeps one session and a
  401002 signs in again once, as every other call does.

`extract_items_reading` and `items_by_url_id` tie this to the pure part in
`lineage/tableau_graph.py`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dbt_tableau_relay.errors import (
    PartialMetadataError,
    PermanentTableauError,
    SessionInvalidError,
    TableauError,
    TransientTableauError,
)
from dbt_tableau_relay.lineage import tableau_graph
from dbt_tableau_relay.lineage.model import ItemKind, TableauItem
from dbt_tableau_relay.retry import RetryPolicy

if TYPE_CHECKING:
    from dbt_tableau_relay.tableau import TableauClient

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # Tableau's own default for `first`
MIN_PAGE_SIZE = 10
POLICY = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=30.0)

HARMLESS = frozenset({"MAX_PAGE_SIZE_EXCEEDED"})  # fewer nodes per page; the paging is right
TRANSIENT = frozenset({"RATE_EXCEEDED", "TIME_LIMIT_EXCEEDED", "BACKFILL_RUNNING"})
_PAGED = re.compile(r"\$first\b[\s\S]*\$after\b|\$after\b[\s\S]*\$first\b")


def query(
    client: TableauClient,
    text: str,
    variables: Mapping[str, Any] | None = None,
    *,
    page_size: int = PAGE_SIZE,
    policy: RetryPolicy = POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The `data` of a query's answer; of every page, nodes joined, for a `...Connection` one."""
    pager = _Pager(client, text, dict(variables or {}), page_size, policy, sleep)
    return pager.all()


def extract_items_reading(
    client: TableauClient, relations: Iterable[str]
) -> list[tuple[TableauItem, frozenset[str]]]:
    """The Tableau items holding an extract that reads these dbt relations, with those read."""
    relations = list(relations)
    nodes: list[Mapping[str, Any]] = []
    for text, variables in tableau_graph.tables_queries(relations):
        data = client.metadata(text, variables)
        nodes.extend(_nodes(data, tableau_graph.TABLES_CONNECTION))
    found = tableau_graph.extract_items(nodes, relations)
    log.info("tableau.lineage_found", extra={"relations": len(relations), "items": len(found)})
    return found


def items_by_url_id(
    client: TableauClient, kind: ItemKind, ids: Iterable[str]
) -> dict[str, TableauItem]:
    """Workbooks or data sources by the numeric id in their URLs (vizportalUrlId)."""
    text, variables = tableau_graph.url_ids_query(kind, ids)
    if not variables["ids"]:
        return {}
    data = client.metadata(text, variables)
    return tableau_graph.resolve_url_ids(kind, _nodes(data, tableau_graph.URL_ID_CONNECTIONS[kind]))


# -- the answer, judged -------------------------------------------------------------


def checked(answer: Any) -> dict[str, Any]:
    """An answer's data, or the project's exception for its errors."""
    if not isinstance(answer, Mapping):
        raise TransientTableauError("Tableau's Metadata API answered something not a JSON object")
    errors = [e for e in answer.get("errors") or [] if _code(e) not in HARMLESS]
    data = answer.get("data")
    if errors:
        raise metadata_error(errors, has_data=_has_data(data))
    if not isinstance(data, dict):
        raise TransientTableauError("Tableau's Metadata API answered no data and no error")
    return data


def metadata_error(errors: list[Any], *, has_data: bool) -> TableauError:
    """The exception for a Metadata API answer's errors (GraphQL errors come with HTTP 200)."""
    codes = [c for c in map(_code, errors) if c]
    code = codes[0] if codes else None
    text = "; ".join(_message(e) for e in errors)[:500]
    if "RATE_EXCEEDED" in codes:
        return TransientTableauError(f"Tableau's Metadata API: rate exceeded ({text})", code=code)
    if has_data:
        return PartialMetadataError(
            f"Tableau's Metadata API answered partial data ({text})", code=code
        )
    lowered = text.lower()
    if set(codes) & TRANSIENT or "timeout" in lowered or "time limit" in lowered:
        return TransientTableauError(f"Tableau's Metadata API: {text}", code=code)
    return PermanentTableauError(f"Tableau's Metadata API refused the query: {text}", code=code)


def _code(error: Any) -> str | None:
    extensions = error.get("extensions") if isinstance(error, Mapping) else None
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    return str(code) if code else None


def _message(error: Any) -> str:
    message = error.get("message") if isinstance(error, Mapping) else None
    return f"{_code(error) or 'error'}: {message or error}"


def _has_data(data: Any) -> bool:
    return isinstance(data, Mapping) and any(v is not None for v in data.values())


def _nodes(data: Mapping[str, Any], root: str) -> list[Mapping[str, Any]]:
    nodes = (data.get(root) or {}).get("nodes") or []
    return [n for n in nodes if isinstance(n, Mapping)]


# -- paging and retries -------------------------------------------------------------


class _Pager:
    def __init__(
        self,
        client: TableauClient,
        text: str,
        variables: dict[str, Any],
        page_size: int,
        policy: RetryPolicy,
        sleep: Callable[[float], None],
    ) -> None:
        self.client, self.text, self.variables = client, text, variables
        self.paged = _PAGED.search(text) is not None
        self.size = max(page_size, 1)
        self.policy, self.sleep = policy, sleep
        self.pages = 0

    def all(self) -> dict[str, Any]:
        data = self._page(None)
        if not self.paged:
            return data
        root = _connection_root(data)
        while root["pageInfo"].get("hasNextPage"):
            after = root["pageInfo"].get("endCursor")
            if not after:
                raise TransientTableauError("Tableau's Metadata API gave a next page, no cursor")
            page = _connection_root(self._page(after))
            root["nodes"].extend(page["nodes"])
            root["pageInfo"] = page["pageInfo"]
        log.info("tableau.metadata_paged", extra={"pages": self.pages, "nodes": len(root["nodes"])})
        return data

    def _page(self, after: str | None) -> dict[str, Any]:
        attempts = 0
        while True:
            try:
                return self._once(after)
            except SessionInvalidError:
                raise  # TableauClient.call signed in again once already
            except PartialMetadataError as exc:
                if self._smaller(exc):
                    continue
                error: TransientTableauError = exc
            except TransientTableauError as exc:
                error = exc
            attempts += 1
            self._back_off(error, attempts)

    def _once(self, after: str | None) -> dict[str, Any]:
        variables = self.variables
        if self.paged:
            variables = {**variables, "first": self.size, "after": after}
        answer = self.client.call(lambda srv: srv.metadata.query(self.text, variables), "metadata")
        self.pages += 1
        return checked(answer)

    def _smaller(self, error: PartialMetadataError) -> bool:
        """Ask in smaller pages: a page that reached a limit may fit when it is smaller."""
        if not self.paged or self.size <= MIN_PAGE_SIZE:
            return False
        self.size = max(MIN_PAGE_SIZE, self.size // 4)
        log.info("tableau.metadata_partial", extra={"page_size": self.size, "error": str(error)})
        return True

    def _back_off(self, error: TransientTableauError, attempts: int) -> None:
        decision = self.policy.decide(error, attempts)
        if decision.action != "retry":
            if isinstance(error, PartialMetadataError):
                raise PartialMetadataError(
                    f"{error} after {attempts} tries in pages of {self.size}; not using it",
                    code=error.code,
                ) from None
            raise error
        log.info("tableau.metadata_retry", extra={"delay": decision.delay, "error": str(error)})
        self.sleep(decision.delay)


def _connection_root(data: dict[str, Any]) -> dict[str, Any]:
    """The one `...Connection` field of a paged query's data."""
    roots = [v for v in data.values() if isinstance(v, dict) and "pageInfo" in v]
    if len(roots) != 1 or not isinstance(roots[0].get("nodes"), list):
        raise PermanentTableauError(
            "a paged Metadata API query must ask for one ...Connection with nodes and pageInfo"
        )
    root: dict[str, Any] = roots[0]
    return root
