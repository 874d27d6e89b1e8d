"""The ASGI application: `create_app(settings)` and the lifespan that owns the store.

Start-up order: store (migrated) → recorder → background services; shutdown
runs the other way, so the recorder drains after the last request and the
store outlives everything that writes to it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Final

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from dbt_tableau_relay import __version__
from dbt_tableau_relay.admin import AdminAccess
from dbt_tableau_relay.admin import router as admin_router
from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.dashboard import router as dashboard_router
from dbt_tableau_relay.metrics import store_metrics
from dbt_tableau_relay.recorder import Recorder
from dbt_tableau_relay.store import Store
from dbt_tableau_relay.webhooks import WEBHOOK_PATH, WebhookContext
from dbt_tableau_relay.webhooks import asgi_endpoint as webhook_endpoint
from dbt_tableau_relay.webhooks import router as webhooks_router

log = logging.getLogger(__name__)

OPENAPI_PATH: Final = "/openapi.json"
READY_TIMEOUT: Final = 3.0  # seconds for the database to answer /readyz
_NOT_READY: Final = {"description": "The database did not answer in time, or the recorder stopped."}

# Builds a service that runs while the app serves: `service.refresh_worker` for `serve`.
BackgroundService = Callable[[FastAPI], AbstractAsyncContextManager[object]]


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    background: Sequence[BackgroundService] = (),
) -> FastAPI:
    """The relay's app. A `store` passed in is migrated but not disposed of."""
    app = RelayApp(
        title="dbt-tableau-relay",
        version=__version__,
        lifespan=_lifespan(settings, store, background),
        # No Swagger UI or ReDoc: both load scripts from a CDN onto the admin API's origin.
        # The schema alone is served, behind the admin access rule (Basic, so a browser asks).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(webhooks_router)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/readyz", readyz, methods=["GET"], responses={503: _NOT_READY})
    # Documented as what it serves (Prometheus text): /openapi.json must tell the truth.
    app.add_api_route("/metrics", metrics, methods=["GET"], response_class=PlainTextResponse)
    # Behind the admin token (see admin.py); the routes above never are.
    app.include_router(admin_router)
    app.include_router(dashboard_router)
    app.add_api_route(
        OPENAPI_PATH,
        openapi_schema,
        methods=["GET"],
        include_in_schema=False,
        dependencies=[Depends(AdminAccess("Basic"))],
    )
    return app


class RelayApp(FastAPI):
    """FastAPI, with `POST /webhooks/dbt` served ahead of the middleware stack.

    That endpoint is the hot path: skipping Starlette's middleware layers for
    it is worth about a quarter of the relay's throughput, and it needs none of
    them (it answers its own errors). Middleware added with `add_middleware`
    therefore does not see webhook deliveries; every other route is untouched.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _path(scope) == WEBHOOK_PATH:
            scope["app"] = self  # as Starlette would: the endpoint reads app.state
            await webhook_endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _path(scope: Scope) -> str:
    """The path below the root path the app is mounted at, as Starlette routes it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


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
            for service in (make(app) for make in background):
                await stack.enter_async_context(service)
            _freeze_startup_heap()
            stack.callback(gc.unfreeze)  # embedded (tests, demo): collectable again after
            log.info("relay.started", extra={"database": store.dialect})
            yield
        log.info("relay.stopped")

    return lifespan


def _publish(app: FastAPI, settings: Settings, store: Store, recorder: Recorder) -> None:
    app.state.settings = settings
    app.state.store = store
    app.state.recorder = recorder
    app.state.webhooks = WebhookContext.from_settings(settings, recorder)


def _freeze_startup_heap() -> None:
    """Keep the garbage collector off what start-up built (modules, models, the app).

    Otherwise every full collection walks all of it: pauses of 50 ms and more
    under load, which alone break the webhook's p99 latency target.
    """
    gc.collect()
    gc.freeze()


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


async def openapi_schema(request: Request) -> JSONResponse:
    """The OpenAPI schema, which describes the admin API: behind the same rule as it."""
    app: FastAPI = request.app
    return JSONResponse(app.openapi())


async def metrics(request: Request) -> Response:
    """Prometheus text: this process's counters, then the store's gauges read now (metrics.py)."""
    gauges = await store_metrics(request.app.state.store)
    return Response(generate_latest() + gauges, media_type=CONTENT_TYPE_LATEST)
