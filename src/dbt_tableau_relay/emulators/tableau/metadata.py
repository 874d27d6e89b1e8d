"""`POST /api/metadata/graphql`: Tableau's Metadata API, over the session's token.

The body is `{"query": ..., "variables": {...}, "operationName": ...}`; the
answer `{"data": ...}`, with `"errors": [...]` beside it when something went
wrong, each error `{"message", "extensions": {"severity", "code"}, ...}`.
A session is checked as the REST API checks it (401000 without a token,
401002 for a dead one, as a tsResponse error). After the HTTP faults
(handler.py) come the Metadata API's own: Tableau's node limit (an answer of
more than `state.metadata_node_limit` objects is cut to fit, with a
NODE_LIMIT_EXCEEDED warning) and the `metadata_error` / `metadata_partial`
faults (faults.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from graphql import graphql_sync

from dbt_tableau_relay.emulators.tableau.faults import Faults, MetadataFault
from dbt_tableau_relay.emulators.tableau.metadata_schema import SCHEMA, Graph, Root
from dbt_tableau_relay.emulators.tableau.protocol import ApiError, Request
from dbt_tableau_relay.emulators.tableau.render import JSON_TYPE
from dbt_tableau_relay.emulators.tableau.state import SiteState

PATH = "/api/metadata/graphql"

Answer = tuple[int, bytes, dict[str, str]]


def is_metadata(path: str) -> bool:
    return path.rstrip("/").lower() == PATH


def answer(state: SiteState, faults: Faults, req: Request) -> Answer:
    """The answer to one Metadata API request; ApiError for a REST-style refusal."""
    if req.method != "POST":
        raise ApiError(405, "405000", "Invalid request method", "Request type was not POST.")
    with state.lock:
        state.auth.check(req.token)
    try:
        query, variables, operation = _body(req.body)
    except ValueError as exc:
        return _json(400, {"errors": [{"message": str(exc)}]})
    if (fault := faults.take_metadata_error()) is not None:
        return _json(200, {"data": None, "errors": [_error(fault)]})
    with state.lock:
        limit = state.metadata_node_limit
        payload = execute(state, query, variables, operation)
    _limit_nodes(payload, limit)
    data = payload.get("data")
    if data and (partial := faults.take_metadata_partial(count_nodes(data))) is not None:
        _truncate(data, lambda nodes: nodes[: len(nodes) // 2])
        payload.setdefault("errors", []).append(_error(partial))
    return _json(200, payload)


def execute(
    state: SiteState, query: str, variables: dict[str, Any] | None, operation: str | None
) -> dict[str, Any]:
    """Run a query against the content; the GraphQL answer as a JSON-ready dict."""
    warnings: list[Any] = []
    result = graphql_sync(
        SCHEMA,
        query,
        root_value=Root(Graph(state.content)),
        context_value=warnings,
        variable_values=variables,
        operation_name=operation,
    )
    payload: dict[str, Any] = {"data": result.data}
    errors = [e.formatted for e in (*(result.errors or ()), *warnings)]
    if errors:
        payload["errors"] = errors
    return payload


def count_nodes(value: Any) -> int:
    """Objects in an answer, as Tableau counts them against its node limit."""
    if isinstance(value, dict):
        return 1 + sum(count_nodes(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_nodes(v) for v in value)
    return 0


def _limit_nodes(payload: dict[str, Any], limit: int) -> None:
    data = payload.get("data")
    if not data or count_nodes(data) <= limit:
        return
    budget = [limit]

    def keep(nodes: list[Any]) -> list[Any]:
        kept = []
        for node in nodes:
            budget[0] -= count_nodes(node)
            if budget[0] < 0:
                break
            kept.append(node)
        return kept

    _truncate(data, keep)
    payload.setdefault("errors", []).append(
        {
            "message": f"Showing partial results. The request exceeded the {limit} node "
            "limit. Use pagination, additional filtering, or both in the query to adjust "
            "results.",
            "extensions": {"severity": "WARNING", "code": "NODE_LIMIT_EXCEEDED"},
        }
    )


def _truncate(data: dict[str, Any], keep: Callable[[list[Any]], list[Any]]) -> None:
    """Cut each top-level list (or a connection's `nodes`) to what `keep` leaves."""
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = keep(value)
        elif isinstance(value, dict) and isinstance(value.get("nodes"), list):
            value["nodes"] = keep(value["nodes"])


def _body(raw: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise ValueError("The request body is not valid JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise ValueError('The request body must be a JSON object with a "query" string.')
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise ValueError('"variables" must be a JSON object.')
    operation = body.get("operationName")
    return body["query"], variables, operation if isinstance(operation, str) else None


def _error(fault: MetadataFault) -> dict[str, Any]:
    return {"message": fault.message, "extensions": {"severity": "ERROR", "code": fault.code}}


def _json(status: int, payload: dict[str, Any]) -> Answer:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return status, body, {"Content-Type": JSON_TYPE}
