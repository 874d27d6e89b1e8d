"""A faithful emulator of the Tableau Server / Tableau Cloud REST API, for tests and demos.

    from dbt_tableau_relay.emulators.tableau import Emulator

    with Emulator(site="marketing", pat_name="relay-pat", pat_secret="s3cret") as emu:
        luid = emu.luid("workbook", "Sales/Executive Overview")
        ...  # point the relay (or TSC) at emu.url

Modules: `content` (the site's projects, workbooks and data sources; the state
file), `catalog` (database tables and each item's connections), `demo_site`,
`jobs` (refresh job lifecycle), `auth` (sign-in and sessions), `api` (the REST
endpoints), `query` (filter and pagination), `elements` and `render` (answers
as XML or JSON), `metadata` and `metadata_schema` (the Metadata API, GraphQL),
`faults`, `control` (/_emulator/ endpoints), `guard` (who may call them; the
body cap), `handler` (HTTP), `server` (`Emulator`, `run_emulator`). See
docs/emulator.md.
"""

from dbt_tableau_relay.emulators.tableau.auth import ConnectedApp
from dbt_tableau_relay.emulators.tableau.content import RefreshOutcome, stable_luid
from dbt_tableau_relay.emulators.tableau.elements import REST_API_VERSION
from dbt_tableau_relay.emulators.tableau.faults import Faults
from dbt_tableau_relay.emulators.tableau.jobs import JobView
from dbt_tableau_relay.emulators.tableau.server import Emulator, run_emulator
from dbt_tableau_relay.emulators.tableau.state import RecordedRequest

__all__ = [
    "REST_API_VERSION",
    "ConnectedApp",
    "Emulator",
    "Faults",
    "JobView",
    "RecordedRequest",
    "RefreshOutcome",
    "run_emulator",
    "stable_luid",
]
