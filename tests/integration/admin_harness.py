"""A relay with chosen admin settings (token, listen address), for the admin surface's tests.

The relay always serves on 127.0.0.1; `listen` only tells it what it was
configured with, which is what the access rule reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import harness
import httpx
from harness import Relay
from pydantic import SecretStr

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.store import Store

TOKEN = "admin-token-for-tests-7f3a"
LEGACY_LEDGER = "Finance/Legacy Ledger"  # fails in the emulator: "Login failed"


@contextmanager
def emulator() -> Iterator[Emulator]:
    with Emulator(
        site="marketing",
        pat_name=harness.PAT_NAME,
        pat_secret=harness.PAT_SECRET,
        job_duration=0.3,
    ) as tableau:
        yield tableau


@contextmanager
def admin_relay(
    tableau: Emulator,
    database_url: str,
    *,
    token: str | None = None,
    listen: str = "127.0.0.1:8080",
    worker: bool = True,
) -> Iterator[Relay]:
    """The relay against `tableau`, with or without its worker."""
    settings = harness.relay_settings(tableau.url, database_url).model_copy(
        update={"admin_token": SecretStr(token) if token else None, "listen": listen}
    )
    app = relay_app(settings) if worker else create_app(settings)
    with ExitStack() as stack:
        running = stack.enter_context(serve_in_thread(app))
        store = Store(database_url)
        stack.callback(store.dispose)
        yield Relay(running.url, tableau, store)


def client(relay: Relay, token: str | None = None, **options: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=relay.url, headers=headers, timeout=10, **options)
