"""Shared fixtures for integration tests: a Tableau emulator on a real port, TSC signed in to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import tableauserverclient as TSC

from dbt_tableau_relay.emulator import Emulator

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
