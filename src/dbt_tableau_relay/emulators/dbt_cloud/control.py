"""The /_emulator/ control endpoints, for tests that run the emulator as a subprocess.

JSON in, JSON out; never subject to faults, never recorded:

    GET    /_emulator/requests              the request log
    GET    /_emulator/runs                  every run, with its steps and job
    POST   /_emulator/runs                  add a run from a run spec; answers the run
    POST   /_emulator/runs/{id}/finish      {"status": 20, "finished_at": "2025-01-01T00:00:00Z",
                                            "steps": {"4": 20}}; answers the run
    POST   /_emulator/runs/{id}/artifacts   {"step": 4, "artifacts": {"run_results.json": {..}}}
    POST   /_emulator/state                 add jobs and runs (state-file form)
    POST   /_emulator/faults                {"fail": {"count": 3, "status": 503}},
                                            {"fail": {"seconds": 2.0}},
                                            {"rate_limit": {"count": 2, "retry_after": 1}},
                                            {"latency": 0.2}, {"drop": {"count": 1}},
                                            {"clear": true}; answers the fault settings
    DELETE /_emulator/faults                clear every fault
    POST   /_emulator/settings              {"artifact_delay": 2.0}
    POST   /_emulator/reset                 the initial runs; no log, no faults
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from dbt_tableau_relay.emulators.dbt_cloud import api, specs
from dbt_tableau_relay.emulators.dbt_cloud.faults import Faults
from dbt_tableau_relay.emulators.dbt_cloud.model import parse_time
from dbt_tableau_relay.emulators.dbt_cloud.state import CloudState

JsonReply = tuple[int, Any]
_Handler = Callable[[CloudState, Faults, dict[str, Any], int], JsonReply]
_RUN_PATH = re.compile(r"^/_emulator/runs/(\d+)/(finish|artifacts)$")


def control(state: CloudState, faults: Faults, method: str, path: str, body: bytes) -> JsonReply:
    """The status and JSON body for one /_emulator/ call."""
    path = path.rstrip("/").lower()
    run_id = 0
    if match := _RUN_PATH.match(path):
        run_id, path = int(match[1]), f"/_emulator/runs/{{id}}/{match[2]}"
    handler = _ROUTES.get((method, path))
    if handler is None:
        return 404, {"error": f"no control endpoint {method} {path}"}
    try:
        data = json.loads(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return handler(state, faults, data, run_id)
    except KeyError as exc:
        return 404, {"error": str(exc.args[0] if exc.args else exc)}
    except (ValueError, TypeError, AttributeError, OSError) as exc:
        return 400, {"error": str(exc)}


def reset(state: CloudState, faults: Faults) -> None:
    """Back to the start: the state file's jobs and runs (if any); no log, no faults."""
    with state.lock:
        state.reset()
        if state.initial is not None:
            specs.load_state(state, *state.initial)
    faults.clear()


def rendered(state: CloudState, run_id: int) -> dict[str, Any]:
    include = frozenset({"run_steps", "job", "trigger"})
    with state.lock:
        return api.render_run(state, state.run(run_id), include)


def _requests(state: CloudState, faults: Faults, data: dict[str, Any], _: int) -> JsonReply:
    with state.lock:
        return 200, [r.to_json() for r in state.requests]


def _runs(state: CloudState, faults: Faults, data: dict[str, Any], _: int) -> JsonReply:
    with state.lock:
        return 200, [rendered(state, run_id) for run_id in sorted(state.runs)]


def _add_run(state: CloudState, faults: Faults, data: dict[str, Any], _: int) -> JsonReply:
    with state.lock:
        run = state.add_run(specs.build_run(state, data))
        return 201, rendered(state, run.id)


def _finish(state: CloudState, faults: Faults, data: dict[str, Any], run_id: int) -> JsonReply:
    if unknown := set(data) - {"status", "finished_at", "steps"}:
        raise ValueError(f"unknown key(s): {', '.join(sorted(unknown))}")
    finished_at = parse_time(data.get("finished_at"))
    steps = {int(k): int(v) for k, v in data.get("steps", {}).items()}
    state.finish(run_id, int(data.get("status", 10)), finished_at, steps)
    return 200, rendered(state, run_id)


def _artifacts(state: CloudState, faults: Faults, data: dict[str, Any], run_id: int) -> JsonReply:
    step = int(data["step"]) if data.get("step") is not None else None
    state.set_artifacts(run_id, step, specs.artifacts_of(data.get("artifacts", {})))
    return 200, {"ok": True}


def _load(state: CloudState, faults: Faults, data: dict[str, Any], _: int) -> JsonReply:
    with state.lock:
        specs.load_state(state, data)
        return 200, {"runs": sorted(state.runs)}


def _set_faults(state: CloudState, faults: Faults, data: dict[str, Any], _: int) -> JsonReply:
    faults.configure(data)
    return 200, faults.describe()


def _clear_faults(state: CloudState, faults: Faults, data: dict[str, Any], _: int) -> JsonReply:
    faults.clear()
    return 200, faults.describe()


def _settings(state: CloudState, faults: Faults, data: dict[str, Any], _: int) -> JsonReply:
    if unknown := set(data) - {"artifact_delay"}:
        raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    with state.lock:
        if "artifact_delay" in data:
            state.artifact_delay = float(data["artifact_delay"])
        return 200, {"artifact_delay": state.artifact_delay}


def _reset(state: CloudState, faults: Faults, data: dict[str, Any], _: int) -> JsonReply:
    reset(state, faults)
    return 200, {"ok": True}


_ROUTES: dict[tuple[str, str], _Handler] = {
    ("GET", "/_emulator/requests"): _requests,
    ("GET", "/_emulator/runs"): _runs,
    ("POST", "/_emulator/runs"): _add_run,
    ("POST", "/_emulator/runs/{id}/finish"): _finish,
    ("POST", "/_emulator/runs/{id}/artifacts"): _artifacts,
    ("POST", "/_emulator/state"): _load,
    ("POST", "/_emulator/faults"): _set_faults,
    ("DELETE", "/_emulator/faults"): _clear_faults,
    ("POST", "/_emulator/settings"): _settings,
    ("POST", "/_emulator/reset"): _reset,
}
