"""Shared fixtures for integration tests: a Tableau emulator on a real port, TSC signed in to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import harness
import pytest
import tableauserverclient as TSC
from harness import Relay

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.store import Store

SITE = "marketing"
PAT_NAME = "relay-pat"
PAT_SECRET = "s3cret-pat-value"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The demo site "marketing" on 127.0.0.1, refresh jobs taking 0.3 s."""
    with Emulator(site=SITE, pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.3) as emu:
        yield emu


@pytest.fixture
def pat() -> tuple[str, str]:
    """The name and secret of the `emulator` fixture's personal access token."""
    return PAT_NAME, PAT_SECRET


@pytest.fixture
def new_tsc_server(emulator: Emulator) -> Iterator[Callable[[], TSC.Server]]:
    """Makes TSC servers signed in to the emulator with its PAT; closes them afterwards."""
    servers: list[TSC.Server] = []

    def sign_in() -> TSC.Server:
        server = TSC.Server(emulator.url, use_server_version=True)
        server.auth.sign_in(TSC.PersonalAccessTokenAuth(PAT_NAME, PAT_SECRET, site_id=SITE))
        servers.append(server)
        return server

    yield sign_in
    for server in servers:
        server.close()


@pytest.fixture
def tsc_server(new_tsc_server: Callable[[], TSC.Server]) -> TSC.Server:
    """One TSC server signed in to the emulator (API version negotiated: 3.27)."""
    return new_tsc_server()


# -- the relay under uvicorn with its worker, against the emulator ------------


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    """Start a relay (and its emulator); `database_url` defaults to a SQLite file."""
    with ExitStack() as stack:

        def start(job_duration: float = 0.3, database_url: str = "", **worker: object) -> Relay:
            tableau = stack.enter_context(
                Emulator(
                    site="marketing",
                    pat_name=harness.PAT_NAME,
                    pat_secret=harness.PAT_SECRET,
                    job_duration=job_duration,
                    users=dict([harness.ADMIN]),
                )
            )
            database_url = database_url or f"sqlite:///{tmp_path / 'relay.db'}"
            settings = harness.relay_settings(tableau.url, database_url, **worker)
            running = stack.enter_context(serve_in_thread(relay_app(settings)))
            store = Store(settings.database_url)
            stack.callback(store.dispose)
            return Relay(running.url, tableau, store)

        yield start


@pytest.fixture
def relay(relay_factory: Callable[..., Relay]) -> Relay:
    return relay_factory()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A database shared by one test module: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('module') / 'relay.db'}"
    return str(request.getfixturevalue("module_postgres_url"))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store of this test's own, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'relay.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store(url)
    store.migrate()
    yield store
    store.dispose()
