"""The relay as it runs: the app with its worker (`serve`), or a worker alone (`worker`)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.cluster import Leadership, take_over
from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.dbt_cloud import DbtCloudClient
from dbt_tableau_relay.errors import ConfigError
from dbt_tableau_relay.lineage_run import RunLineage
from dbt_tableau_relay.notifications import routes_of
from dbt_tableau_relay.notifier import Notifier
from dbt_tableau_relay.reconcile import Reconciler
from dbt_tableau_relay.retention import Retention
from dbt_tableau_relay.store import Store
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.worker import Worker, default_worker_id


def relay_app(settings: Settings, *, store: Store | None = None) -> FastAPI:
    """The webhook receiver with the refresh worker beside it, in one process."""
    return create_app(settings, store=store, background=[refresh_worker])


@asynccontextmanager
async def refresh_worker(app: FastAPI) -> AsyncIterator[Worker]:
    """Runs the worker while the app serves; it shares the app's store."""
    settings: Settings = app.state.settings
    with running_worker(settings, app.state.store) as worker:
        app.state.worker = worker
        app.state.recorder.add_listener(worker.wake)
        yield worker


@contextmanager
def running_worker(settings: Settings, store: Store) -> Iterator[Worker]:
    """The worker, led by the `tableau` lease; with `dbt.cloud`, lineage and the reconciler.

    Shutdown runs the other way: the worker finishes its calls, the client
    signs out, and only then is the lease released (cluster.py). With
    `notify:`, the notifier too, stopped after the worker (whose last
    transitions may queue messages; those left are sent at the next start).
    """
    with ExitStack() as stack:
        holder = default_worker_id()
        lead = Leadership(store, holder, settings.worker.leader_lease_seconds)
        stack.callback(lead.stop)
        client = TableauClient(settings.tableau, may_call=lead.leading)
        stack.callback(client.close)  # signs out: the PAT's session ends with the process
        cloud = settings.dbt.cloud
        dbt = stack.enter_context(DbtCloudClient(cloud)) if cloud else None
        resolver = RunLineage(dbt, client, settings.tableau.site) if dbt else None
        worker = Worker(
            store,
            client,
            settings.worker,
            worker_id=holder,
            resolver=resolver,
            notify=routes_of(settings.notify),
            leading=lead.leading,
        )
        if settings.notify:
            notifier = Notifier.from_settings(store, settings, holder=holder)
            notifier.start()
            stack.callback(notifier.stop)

        def gained() -> None:  # the jobs of a leader that is gone are this one's now
            take_over(store, holder)
            worker.wake()

        lead.on_gained, lead.on_lost = gained, client.forget_session
        lead.start()
        worker.start()
        stack.callback(worker.stop)
        for service in _once_per_cluster(settings, store, holder, dbt, worker.wake):
            service.start()
            stack.callback(service.stop)
        yield worker


def _once_per_cluster(
    settings: Settings,
    store: Store,
    holder: str,
    dbt: DbtCloudClient | None,
    wake: Callable[[], None],
) -> list[Reconciler | Retention]:
    """What runs on one replica at a time, each under a lease of its own."""
    services: list[Reconciler | Retention] = []
    cloud = settings.dbt.cloud
    if dbt is not None and cloud is not None and cloud.reconcile_seconds:
        every = cloud.reconcile_seconds
        services.append(
            Reconciler(store, dbt, settings.rules, every=every, holder=holder, on_recorded=wake)
        )
    if settings.retention.days is not None:
        services.append(Retention(store, settings.retention.days, holder=holder))
    return services


def listen_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"listen: {settings.listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def serve(settings: Settings) -> None:
    """`dbt-tableau-relay serve`: until SIGTERM or Ctrl-C."""
    if not any(s.get_secret_value() for s in settings.dbt.webhook_secrets):
        raise ConfigError("dbt.webhook_secrets: give at least one, or every delivery is refused")
    host, port = listen_address(settings)
    # Reached and migrated before uvicorn starts: a database problem is then one line
    # (a DatabaseError), not uvicorn's "Application startup failed" and a traceback.
    store = Store(settings.database_url)
    try:
        store.migrate()
        uvicorn.run(
            relay_app(settings, store=store),
            host=host,
            port=port,
            log_config=None,  # keep the relay's own logging
            access_log=False,
            limit_concurrency=settings.limit_concurrency,  # beyond: 503, not a slow death
            timeout_keep_alive=5,
            timeout_graceful_shutdown=30,
        )
    finally:
        store.dispose()


def work(settings: Settings) -> None:
    """`dbt-tableau-relay worker`: a worker alone, until SIGTERM or Ctrl-C."""
    store = Store(settings.database_url)
    try:
        store.migrate()  # a DatabaseError, one line, if the database cannot be used
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        with running_worker(settings, store):
            stop.wait()
    finally:
        store.dispose()


@dataclass(frozen=True)
class RunningServer:
    url: str
    host: str
    port: int
    server: uvicorn.Server


@contextmanager
def serve_in_thread(
    app: Any, *, startup_timeout: float = 15.0, limit_concurrency: int | None = None
) -> Iterator[RunningServer]:
    """Serve an ASGI app on a free 127.0.0.1 port in a thread (demo, tests, benchmarks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", limit_concurrency=limit_concurrency
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the relay did not start (see its log)")
            time.sleep(0.01)
        yield RunningServer(f"http://127.0.0.1:{port}", "127.0.0.1", port, server)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
