"""A stand-alone emulator of the dbt Cloud Admin API v2: runs, steps, per-step artifacts.

    from dbt_tableau_relay.emulators.dbt_cloud import DbtCloudEmulator

    with DbtCloudEmulator(accounts={1: "service-token"}, artifact_delay=2.0) as emu:
        run_id = emu.add_run(job_id=123, steps=[
            {"command": "dbt build", "artifacts": {"run_results.json": {...}}},
            "dbt docs generate",
        ])
        ...  # point the relay at emu.url (dbt.cloud.access_url)

Modules: `model` (jobs, runs, steps and their JSON), `specs` (runs from
Python, JSON or a state file), `state` (what the emulator holds; the request
log), `api` (the /api/v2 endpoints), `faults`, `control` (/_emulator/
endpoints), `handler` (HTTP), `server` (`DbtCloudEmulator`,
`run_dbt_cloud_emulator`). It imports nothing of the relay. See
docs/dbt-cloud-emulator.md.
"""

from dbt_tableau_relay.emulators.dbt_cloud.faults import Faults
from dbt_tableau_relay.emulators.dbt_cloud.model import (
    CANCELLED,
    ERROR,
    QUEUED,
    RUNNING,
    SETUP_STEPS,
    STARTING,
    SUCCESS,
)
from dbt_tableau_relay.emulators.dbt_cloud.server import (
    DEMO_ACCOUNT_ID,
    DEMO_TOKEN,
    DbtCloudEmulator,
    run_dbt_cloud_emulator,
)
from dbt_tableau_relay.emulators.dbt_cloud.state import RecordedRequest

__all__ = [
    "CANCELLED",
    "DEMO_ACCOUNT_ID",
    "DEMO_TOKEN",
    "ERROR",
    "QUEUED",
    "RUNNING",
    "SETUP_STEPS",
    "STARTING",
    "SUCCESS",
    "DbtCloudEmulator",
    "Faults",
    "RecordedRequest",
    "run_dbt_cloud_emulator",
]
