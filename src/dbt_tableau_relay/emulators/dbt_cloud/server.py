"""`DbtCloudEmulator`: the Python face of the emulator, and `run_dbt_cloud_emulator` for the CLI."""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from dbt_tableau_relay.emulators.dbt_cloud import control, specs
from dbt_tableau_relay.emulators.dbt_cloud.faults import Faults
from dbt_tableau_relay.emulators.dbt_cloud.handler import CloudHTTPServer
from dbt_tableau_relay.emulators.dbt_cloud.model import SUCCESS, parse_time
from dbt_tableau_relay.emulators.dbt_cloud.state import CloudState, RecordedRequest

logger = logging.getLogger("dbt_tableau_relay.emulators.dbt_cloud")

StateSource = Mapping[str, Any] | str | os.PathLike[str] | None
When = datetime | float | str | None

DEMO_ACCOUNT_ID = 1
DEMO_TOKEN = "dbtc_emulator-service-token"  # noqa: S105 - the emulator's published demo token


class DbtCloudEmulator:
    """A dbt Cloud Admin API v2 stand-in on a real HTTP port.

    `accounts` maps each account id to its service token (default: account 1,
    `DEMO_TOKEN`). Artifacts of a run answer 404 until `artifact_delay`
    seconds after it finished, as dbt Cloud's do while it ingests them.
    `state` is a state-file mapping or path (jobs and runs). Thread-safe.
    """

    def __init__(
        self,
        *,
        accounts: Mapping[int, str] | None = None,
        artifact_delay: float = 0.0,
        state: StateSource = None,
    ) -> None:
        self.faults = Faults()
        self._state = CloudState(accounts or {DEMO_ACCOUNT_ID: DEMO_TOKEN}, artifact_delay)
        if state is not None:
            self._state.initial = _read_state(state)
            specs.load_state(self._state, *self._state.initial)
        self._server: CloudHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Listen on host:port (0: a free port) in a background thread; the base URL."""
        server = self._bind(port, host)
        serve = functools.partial(server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="dbt-cloud-emulator", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._server.close_connections()
        self._server.server_close()
        self._server = None
        logger.info("dbt_cloud_emulator.stopped url=%s", self._state.base_url)
        self._state.base_url = ""

    def __enter__(self) -> DbtCloudEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The access URL (scheme, host and port), as `dbt.cloud.access_url` takes it."""
        if not self._state.base_url:
            raise RuntimeError("the emulator is not started")
        return self._state.base_url

    @property
    def account_id(self) -> int:
        """The first account's id."""
        return self._state.default_account

    @property
    def token(self) -> str:
        """The first account's service token."""
        return self._state.accounts[self._state.default_account]

    # jobs and runs

    def add_job(
        self,
        job_id: int,
        *,
        name: str | None = None,
        account_id: int | None = None,
        project_id: int = 1,
        environment_id: int = 1,
        execute_steps: Sequence[str] = ("dbt build",),
        generate_docs: bool = False,
    ) -> int:
        spec = {
            "id": job_id,
            "name": name or f"Job {job_id}",
            "account_id": account_id,
            "project_id": project_id,
            "environment_id": environment_id,
            "execute_steps": list(execute_steps),
            "generate_docs": generate_docs,
        }
        with self._state.lock:
            return self._state.add_job(specs.build_job(self._state, spec)).id

    def add_run(
        self,
        *,
        run_id: int | None = None,
        account_id: int | None = None,
        job_id: int = 1,
        environment_id: int = 1,
        project_id: int = 1,
        status: int = SUCCESS,
        steps: Sequence[specs.StepSpec] = ("dbt build",),
        setup_steps: bool = False,
        created_at: When = None,
        started_at: When = None,
        finished_at: When = None,
        cause: str | None = None,
        job_name: str | None = None,
    ) -> int:
        """Add a run; the id (given, or the next free one). See `specs` for step specs."""
        spec: dict[str, Any] = {
            "id": run_id,
            "account_id": account_id,
            "job_id": job_id,
            "environment_id": environment_id,
            "project_id": project_id,
            "status": status,
            "steps": list(steps),
            "setup_steps": setup_steps,
            "created_at": created_at,
            "started_at": started_at,
            "finished_at": finished_at,
            "job_name": job_name,
        }
        if cause is not None:
            spec["cause"] = cause
        with self._state.lock:
            return self._state.add_run(specs.build_run(self._state, spec)).id

    def finish_run(
        self,
        run_id: int,
        status: int = SUCCESS,
        *,
        finished_at: When = None,
        steps: Mapping[int, int] | None = None,
    ) -> None:
        """End a running run now (or at `finished_at`); `steps` maps step index to status."""
        self._state.finish(run_id, status, parse_time(finished_at), steps)

    def set_artifacts(
        self, run_id: int, artifacts: Mapping[str, Any], *, step: int | None = None
    ) -> None:
        """Add or replace files of step `step` (None: the last step): JSON values, text, bytes."""
        self._state.set_artifacts(run_id, step, specs.artifacts_of(artifacts))

    def run_json(self, run_id: int) -> dict[str, Any]:
        """The run as the API renders it, steps, trigger and job included."""
        return control.rendered(self._state, run_id)

    def load_state(self, state: Mapping[str, Any] | str | os.PathLike[str]) -> None:
        """Add the jobs and runs of a state-file mapping or path."""
        with self._state.lock:
            specs.load_state(self._state, *_read_state(state))

    # behaviour

    @property
    def artifact_delay(self) -> float:
        return self._state.artifact_delay

    @artifact_delay.setter
    def artifact_delay(self, seconds: float) -> None:
        with self._state.lock:
            self._state.artifact_delay = seconds

    def reset(self) -> None:
        """The initial runs (a state file's, or none); no recorded requests or faults."""
        control.reset(self._state, self.faults)

    # what happened

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def artifact_requests(self, run_id: int | None = None) -> list[RecordedRequest]:
        """Artifact GETs, whatever they were answered, optionally of one run."""
        part = f"/runs/{run_id}/artifacts/" if run_id is not None else "/artifacts/"
        return [r for r in self.requests if part in r.path]

    # internals

    def _bind(self, port: int, host: str) -> CloudHTTPServer:
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        server = self._server = CloudHTTPServer((host, port), self._state, self.faults)
        address, bound_port = server.server_address[:2]
        bound_host = address.decode() if isinstance(address, bytes) else str(address)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._state.base_url = f"http://{shown}:{bound_port}"
        logger.info("dbt_cloud_emulator.started url=%s", self._state.base_url)
        return server


def run_dbt_cloud_emulator(
    port: int,
    host: str = "127.0.0.1",
    state_file: str | os.PathLike[str] | None = None,
    *,
    accounts: Mapping[int, str] | None = None,
    artifact_delay: float = 0.0,
    ready: Callable[[DbtCloudEmulator], None] | None = None,
) -> None:
    """Serve the emulator on host:port until Ctrl-C; `ready` is called once it listens."""
    emulator = DbtCloudEmulator(accounts=accounts, artifact_delay=artifact_delay, state=state_file)
    emulator.start(port, host)
    if ready is not None:
        ready(emulator)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def _read_state(
    source: Mapping[str, Any] | str | os.PathLike[str],
) -> tuple[Mapping[str, Any], Path | None]:
    """A state mapping, and the folder its `artifact_files` are relative to."""
    if isinstance(source, Mapping):
        return source, None
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read dbt Cloud emulator state file {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"dbt Cloud emulator state file {path} must hold a JSON object")
    return data, path.parent
