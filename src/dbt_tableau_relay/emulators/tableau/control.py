"""The /_emulator/ control endpoints, for tests that run the emulator as a subprocess.

JSON in, JSON out; never subject to faults, never recorded; served only to
this machine's clients, or to holders of the control token (`guard`):

    GET    /_emulator/requests              the request log
    GET    /_emulator/jobs                  every job, as of now
    GET    /_emulator/luids                 site, project, workbook and data source LUIDs
    POST   /_emulator/faults                {"fail": {"count": 3, "status": 503}} or
                                            {"fail": {"seconds": 2.0, "processed": true}},
                                            {"rate_limit": {"count": 2, "retry_after": 1}},
                                            {"latency": 0.2}, {"drop": {"count": 1}},
                                            {"clear": true}; answers the fault settings
    DELETE /_emulator/faults                clear every fault
    POST   /_emulator/invalidate-sessions   end every session (next calls get 401002)
    POST   /_emulator/reset                 initial content; no jobs, sessions, log or faults
    POST   /_emulator/content               merge content in (state-file format)
    POST   /_emulator/refresh-outcome       {"luid": .., "finish_code": 1, "notes": ".."}
    POST   /_emulator/settings              {"job_duration": 0.5, "session_ttl": 60,
                                             "metadata_node_limit": 20000}

Faults also take {"metadata_error": {"count": 1, "code": "RATE_EXCEEDED"}} and
{"metadata_partial": {"count": null, "above_nodes": 500}} (see faults.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from dbt_tableau_relay.emulators.tableau.content import KINDS, RefreshOutcome
from dbt_tableau_relay.emulators.tableau.faults import Faults
from dbt_tableau_relay.emulators.tableau.state import SiteState

JsonReply = tuple[int, Any]
_Handler = Callable[[SiteState, Faults, dict[str, Any]], JsonReply]


def control(state: SiteState, faults: Faults, method: str, path: str, body: bytes) -> JsonReply:
    """The status and JSON body for one /_emulator/ call."""
    handler = _ROUTES.get((method, path.rstrip("/").lower()))
    if handler is None:
        return 404, {"error": f"no control endpoint {method} {path}"}
    try:
        data = json.loads(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return handler(state, faults, data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return 400, {"error": str(exc)}


def _requests(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    with state.lock:
        return 200, [r.to_json() for r in state.requests]


def _jobs(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    with state.lock:
        return 200, [asdict(v) for v in state.jobs.views()]


def _luids(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    with state.lock:
        content = state.content
        answer: dict[str, Any] = {"site": state.site_luid}
        answer["projects"] = {p.path: p.luid for p in content.projects.values()}
        for kind in KINDS:
            answer[f"{kind}s"] = {i.path: i.luid for i in content.of_kind(kind)}
        return 200, answer


def _set_faults(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    faults.configure(data)
    return 200, faults.describe()


def _clear_faults(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    faults.clear()
    return 200, faults.describe()


def _invalidate(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    with state.lock:
        state.auth.invalidate_all()
    return 200, {"ok": True}


def _reset(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    state.reset()
    faults.clear()
    return 200, {"ok": True}


def _content(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    with state.lock:
        state.content.load(data)
    return _luids(state, faults, {})


def _refresh_outcome(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    outcome = RefreshOutcome(int(data.get("finish_code", 0)), data.get("notes"))
    with state.lock:
        item = state.content.items.get(str(data["luid"]).lower())
        if item is None:
            return 404, {"error": f"no workbook or data source {data['luid']}"}
        item.outcome = outcome
    return 200, {"ok": True}


def _settings(state: SiteState, faults: Faults, data: dict[str, Any]) -> JsonReply:
    with state.lock:
        if "job_duration" in data:
            state.job_duration = float(data["job_duration"])
        if "session_ttl" in data:
            state.auth.session_ttl = float(data["session_ttl"])
        if "metadata_node_limit" in data:
            state.metadata_node_limit = int(data["metadata_node_limit"])
        return 200, {
            "job_duration": state.job_duration,
            "session_ttl": state.auth.session_ttl,
            "metadata_node_limit": state.metadata_node_limit,
        }


_ROUTES: dict[tuple[str, str], _Handler] = {
    ("GET", "/_emulator/requests"): _requests,
    ("GET", "/_emulator/jobs"): _jobs,
    ("GET", "/_emulator/luids"): _luids,
    ("POST", "/_emulator/faults"): _set_faults,
    ("DELETE", "/_emulator/faults"): _clear_faults,
    ("POST", "/_emulator/invalidate-sessions"): _invalidate,
    ("POST", "/_emulator/reset"): _reset,
    ("POST", "/_emulator/content"): _content,
    ("POST", "/_emulator/refresh-outcome"): _refresh_outcome,
    ("POST", "/_emulator/settings"): _settings,
}
