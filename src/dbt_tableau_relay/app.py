"""The ASGI application: `create_app(settings)` and the lifespan that owns the store.

Start-up order: store (migrated) → recorder → background services; shutdown
runs the other way, so the recorder drains after the last request and the
store outlives everything that writes to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dbt_tableau_relay import __version__
from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.recorder import Recorder
from dbt_tableau_relay.store import Store
from dbt_tableau_relay.webhooks import WebhookContext
from dbt_tableau_relay.webhooks import router as webhooks_router

log = logging.getLogger(__name__)

READY_TIMEOUT: Final = 3.0  # seconds for the database to answer /readyz

# Builds a service that runs while the app serves, e.g. the refresh worker.
BackgroundService = Callable[[FastAPI], AbstractAsyncContextManager[object]]


def background_services(app: FastAPI) -> list[AbstractAsyncContextManager[object]]:
    """The services every app runs beside the HTTP endpoints: THE place to add the worker.

    Called once the store is migrated and the recorder runs; `app.state`
    holds `settings`, `store` and `recorder`. Each is entered in order at
    start-up and exited in reverse at shutdown, before the recorder drains.
    """
    return []


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    background: Sequence[BackgroundService] = (),
) -> FastAPI:
    """The relay's app. A `store` passed in is migrated but not disposed of."""
    app = FastAPI(
        title="dbt-tableau-relay",
        version=__version__,
        lifespan=_lifespan(settings, store, background),
    )
    app.include_router(webhooks_router)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/readyz", readyz, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    return app


def _lifespan(
    settings: Settings, given: Store | None, background: Sequence[BackgroundService]
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            store = given or Store(settings.database_url)
            if given is None:
                stack.callback(store.dispose)
            await asyncio.to_thread(store.migrate)
            recorder = Recorder(store)
            recorder.start()
            stack.push_async_callback(asyncio.to_thread, recorder.stop)
            _publish(app, settings, store, recorder)
            for service in [*background_services(app), *(make(app) for make in background)]:
                await stack.enter_async_context(service)
            log.info("relay.started", extra={"database": store.dialect})
            yield
        log.info("relay.stopped")

    return lifespan


def _publish(app: FastAPI, settings: Settings, store: Store, recorder: Recorder) -> None:
    app.state.settings = settings
    app.state.store = store
    app.state.recorder = recorder
    app.state.webhooks = WebhookContext.from_settings(settings, recorder)


async def healthz() -> JSONResponse:
    """The process is up (liveness): always 200."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: the database answers and the recorder runs."""
    store: Store = request.app.state.store
    recorder: Recorder = request.app.state.recorder
    try:
        await asyncio.wait_for(asyncio.to_thread(store.ping), READY_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("relay.not_ready", extra={"error": repr(exc)})
        return JSONResponse({"status": "unavailable", "error": "database"}, status_code=503)
    if not recorder.running:
        return JSONResponse({"status": "unavailable", "error": "recorder"}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
