"""`POST /webhooks/dbt`: verify, decide, record, acknowledge. Never calls Tableau.

dbt Cloud waits 10 seconds and retries on anything but a 2xx, so the
endpoint answers as soon as the event is durably stored: 202 queued, 200
duplicate or ignored, 400 signed-but-not-an-event (stored as 'invalid'),
401 unsigned (before the body is read when `Authorization` is missing or is
not 64 hex characters), 408 body too slow, 413 too large, 422 signed but
outside the replay window (not stored), 503 when the store failed (dbt
retries). The warnings a stranger can cause are throttled (`logs.Throttle`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dbt_tableau_relay.config import DbtSettings, Rule, Settings
from dbt_tableau_relay.errors import MalformedEventError
from dbt_tableau_relay.events import DbtEvent, parse_event
from dbt_tableau_relay.logs import Throttle
from dbt_tableau_relay.recorder import Recorded, Recorder, Submission
from dbt_tableau_relay.rules import match, match_lineage
from dbt_tableau_relay.store import utcnow
from dbt_tableau_relay.webhook_schema import describe

log = logging.getLogger(__name__)
router = APIRouter()

MAX_BODY_BYTES: Final = 1024 * 1024
RECORD_TIMEOUT: Final = 8.0  # seconds: answer 503 before dbt's 10 s delivery window ends
# dbt sends a body at once; a body still trickling in after this is a slow-drip attack.
BODY_TIMEOUT: Final = DbtSettings().body_timeout_seconds  # dbt.body_timeout_seconds
# How far ahead of the relay's clock an event's timestamp may be, when a replay window is set.
MAX_CLOCK_SKEW: Final = 60.0
# What dbt Cloud sends: the bare hex digest, in either case (no `sha256=` prefix, as GitHub's).
SIGNATURE_SHAPE: Final = re.compile(r"[0-9a-fA-F]{64}")
# Seconds between two log lines of one event a stranger can cause (401, 408, 413, hang-ups).
LOG_INTERVAL: Final = 10.0
OUTCOMES: Final = (
    "accepted",
    "duplicate",
    "ignored",
    "invalid",
    "unauthorized",
    "too_large",
    "timeout",
    "stale",
    "error",
)
WEBHOOKS = Counter("relay_webhooks", "dbt Cloud webhook deliveries, by outcome.", ["outcome"])
for _outcome in OUTCOMES:
    WEBHOOKS.labels(_outcome)  # every outcome shows on /metrics from the start, at 0
WEBHOOK_SECONDS = Histogram(
    "relay_webhook_seconds",
    "Time from request to answer for POST /webhooks/dbt.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@dataclass(frozen=True, slots=True)
class WebhookContext:
    """What the endpoint needs, put on `app.state.webhooks` by the app's lifespan."""

    secrets: tuple[bytes, ...]
    rules: tuple[Rule, ...]
    recorder: Recorder
    max_body: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT
    max_event_age: float | None = None  # None: no replay window
    throttles: dict[str, Throttle] = field(default_factory=dict)  # per log event, see `_warn`

    @classmethod
    def from_settings(cls, settings: Settings, recorder: Recorder) -> WebhookContext:
        secrets = tuple(s.get_secret_value().encode() for s in settings.dbt.webhook_secrets)
        # An empty key is a key anyone can sign with: never accept it.
        usable = tuple(s for s in secrets if s)
        if not usable:
            log.warning("webhook.no_secrets", extra={"detail": "every delivery will get 401"})
        return cls(
            usable,
            settings.rules,
            recorder,
            body_timeout=settings.dbt.body_timeout_seconds,
            max_event_age=settings.dbt.max_event_age_seconds,
        )


class BodyTooLarge(Exception):
    """Control flow inside this module: the body passed the size limit."""


class BodyTimeout(Exception):
    """Control flow inside this module: the body did not arrive in time."""


class Deadline:
    """`asyncio.timeout(seconds)` for the hot path: TimeoutError out of the block once
    `seconds` pass, for a fraction of the cost.

    `asyncio.timeout` costs about 20 µs a request here, a tenth of this
    endpoint's own work; one timer handle, cancelled on the way out, does the
    same job. As there, a cancellation from elsewhere passes through untouched.
    """

    __slots__ = ("_cancelling", "_expired", "_task", "_timer")

    def __init__(self, seconds: float) -> None:
        self._task = asyncio.current_task()
        self._cancelling = self._task.cancelling() if self._task else 0
        self._expired = False
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        self._timer.cancel()
        if not self._expired or self._task is None:
            return
        # Withdraw our cancellation; it was the only one if the count is back where it was.
        if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from error


def verify_signature(body: bytes, authorization: str | None, secrets: Sequence[bytes]) -> bool:
    """True if `authorization` is the hex HMAC-SHA256 of `body` under any secret.

    Constant time in the header's content: every secret is checked, no early exit.
    """
    if authorization is None:
        return False
    given = authorization.strip().lower().encode("utf-8", errors="replace")
    valid = False
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        valid |= hmac.compare_digest(expected, given)
    return valid


def well_formed(authorization: str) -> bool:
    """Could be a signature at all: 64 hex characters, surrounding whitespace aside.

    Cheap (one match of at most 64 characters), so that anything else is refused
    before its body is read.
    """
    return SIGNATURE_SHAPE.fullmatch(authorization.strip()) is not None


def sign(body: bytes, secret: str | bytes) -> str:
    """The `Authorization` value dbt Cloud sends with `body` (for tests and send-test)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


async def read_body(request: Request, limit: int, timeout: float = BODY_TIMEOUT) -> bytes:
    """The whole body, at most `limit` bytes, read within `timeout` seconds.

    Raises BodyTooLarge as soon as the body is known to pass `limit`,
    BodyTimeout when it is not all there in time, and Starlette's
    ClientDisconnect when the client leaves before the end.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    try:
        with Deadline(timeout):
            return await _read_chunks(request, limit)
    except TimeoutError:
        raise BodyTimeout from None


async def _read_chunks(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked, or a Content-Length that lied
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_dbt_webhook(request: Request) -> JSONResponse:
    """POST /webhooks/dbt: verify, decide, record, answer."""
    started = time.perf_counter()
    try:
        return await _receive(request, request.app.state.webhooks)
    finally:
        WEBHOOK_SECONDS.observe(time.perf_counter() - started)


class _BareEndpoint:
    """`receive_dbt_webhook` as a bare ASGI app, for the hot path.

    The relay must acknowledge 1,000+ webhooks a second on two cores; FastAPI's
    per-request parameter machinery would cost about as much as the endpoint's
    own work, and it takes no parameters anyway. `app.RelayApp` goes further
    and calls it before the middleware stack.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await receive_dbt_webhook(Request(scope, receive))
        await response(scope, receive, send)


WEBHOOK_PATH: Final = "/webhooks/dbt"
asgi_endpoint = _BareEndpoint()
router.routes.append(
    Route(WEBHOOK_PATH, asgi_endpoint, methods=["POST"], name="receive_dbt_webhook")
)
describe(router, WEBHOOK_PATH, receive_dbt_webhook)  # the schema's view of the bare route


async def _receive(request: Request, ctx: WebhookContext) -> JSONResponse:
    received_at = utcnow()
    authorization = request.headers.get("authorization")
    if authorization is None:
        return _unauthorized(request, ctx, "missing Authorization header", unread=True)
    if not well_formed(authorization):
        reason = "Authorization is not a hex HMAC-SHA256 signature (64 hex characters)"
        return _unauthorized(request, ctx, reason, unread=True)
    try:
        body = await read_body(request, ctx.max_body, ctx.body_timeout)
    except BodyTooLarge:
        return _too_large(request, ctx)
    except BodyTimeout:
        return _too_slow(request, ctx)
    except ClientDisconnect:
        return _disconnected(request, ctx)
    if not verify_signature(body, authorization, ctx.secrets):
        return _unauthorized(request, ctx, "signature does not match")
    try:
        event = parse_event(body)
    except MalformedEventError as exc:
        return await _invalid(ctx, Submission(body, received_at, error=str(exc)))
    if problem := replay_problem(event.timestamp, received_at, ctx.max_event_age):
        return _stale(request, event, problem)
    planned, lineage = match(ctx.rules, event), match_lineage(ctx.rules, event)
    submission = Submission(body, received_at, event, planned, lineage=lineage)
    recorded = await _record(ctx, submission)
    if recorded is None:
        return _unavailable(event.event_id)
    return _answer(event, recorded)


def replay_problem(
    timestamp: datetime, now: datetime, max_age: float | None, skew: float = MAX_CLOCK_SKEW
) -> str | None:
    """Why an event's timestamp is outside the replay window, or None if it is inside.

    No window (`max_age` None) lets every timestamp in. The future is allowed
    `skew` seconds, for clocks that disagree a little.
    """
    if max_age is None:
        return None
    age = (now - timestamp).total_seconds()
    if age > max_age:
        return f"event timestamp is {age:.0f} s old, older than the {max_age:g} s replay window"
    if -age > skew:
        return f"event timestamp is {-age:.0f} s in the future, more than {skew:g} s of clock skew"
    return None


async def _record(ctx: WebhookContext, submission: Submission) -> Recorded | None:
    """Recorded, or None (logged, counted) if the store failed or took too long."""
    try:
        with Deadline(RECORD_TIMEOUT):
            return await ctx.recorder.record(submission)
    except Exception as exc:  # noqa: BLE001 - a failed or slow store is a 503: dbt retries
        ev = submission.event
        fields = {"event_id": ev.event_id, "dbt_job": ev.job_id, "run_id": ev.run_id} if ev else {}
        log.error("webhook.store_failed", extra=fields | {"error": repr(exc)})
        WEBHOOKS.labels("error").inc()
        return None


def _answer(event: DbtEvent, recorded: Recorded) -> JSONResponse:
    fields = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "dbt_job": event.job_id,
        "run_id": event.run_id,
        "event_pk": recorded.event_pk,
        "refreshes": recorded.refreshes_queued,
    }
    body = {
        "status": recorded.status,
        "event_id": event.event_id,
        "refreshes_queued": recorded.refreshes_queued,
    }
    if recorded.lineage_ids:  # lineage rules: the worker finds their refreshes
        body["lineage_queued"] = len(recorded.lineage_ids)
    if recorded.status == "queued":
        # DEBUG: a line per webhook costs throughput; `recorder.batch` names the runs at INFO.
        log.debug("webhook.accepted", extra=fields)
        WEBHOOKS.labels("accepted").inc()
        return JSONResponse(body, status_code=202)
    log.debug(f"webhook.{recorded.status}", extra=fields)
    WEBHOOKS.labels(recorded.status).inc()
    return JSONResponse(body, status_code=200)


async def _invalid(ctx: WebhookContext, submission: Submission) -> JSONResponse:
    recorded = await _record(ctx, submission)
    if recorded is None:
        return _unavailable(None)
    log.info("webhook.invalid", extra={"event_pk": recorded.event_pk, "error": submission.error})
    WEBHOOKS.labels("invalid").inc()
    return JSONResponse({"error": submission.error}, status_code=400)


def _warn(
    ctx: WebhookContext, event: str, fields: dict[str, Any], level: int = logging.WARNING
) -> None:
    """Log `event` unless its throttle holds it back; the line says how many it held."""
    throttle = ctx.throttles.get(event)
    if throttle is None:
        throttle = ctx.throttles[event] = Throttle(LOG_INTERVAL)
    held = throttle.admit(time.monotonic())
    if held is None:
        return
    if held:
        fields["suppressed"] = held
    log.log(level, event, extra=fields)


def _unauthorized(
    request: Request, ctx: WebhookContext, reason: str, *, unread: bool = False
) -> JSONResponse:
    # The header's value is never logged or echoed: it is a signature made with the secret.
    _warn(ctx, "webhook.unauthorized", {"reason": reason, "client": _client(request)})
    WEBHOOKS.labels("unauthorized").inc()
    # A body that was never read: close, rather than wait for it on a keep-alive connection.
    headers = {"Connection": "close"} if unread else None
    return JSONResponse({"error": f"unauthorized: {reason}"}, status_code=401, headers=headers)


def _too_large(request: Request, ctx: WebhookContext) -> JSONResponse:
    limit = ctx.max_body
    _warn(ctx, "webhook.too_large", {"limit": limit, "client": _client(request)})
    WEBHOOKS.labels("too_large").inc()
    # Close the connection: the rest of the body was never read.
    headers = {"Connection": "close"}
    return JSONResponse(
        {"error": f"body larger than {limit} bytes"}, status_code=413, headers=headers
    )


def _too_slow(request: Request, ctx: WebhookContext) -> JSONResponse:
    timeout = ctx.body_timeout
    _warn(ctx, "webhook.body_timeout", {"timeout": timeout, "client": _client(request)})
    WEBHOOKS.labels("timeout").inc()
    return JSONResponse(
        {"error": f"body not received within {timeout:g} s"},
        status_code=408,
        headers={"Connection": "close"},  # the rest of the body may still be on its way
    )


def _disconnected(request: Request, ctx: WebhookContext) -> JSONResponse:
    # Nobody reads this answer; it only ends the request without an error trace.
    _warn(ctx, "webhook.disconnected", {"client": _client(request)}, level=logging.INFO)
    return JSONResponse({"error": "client disconnected before the body was complete"}, 400)


def _stale(request: Request, event: DbtEvent, problem: str) -> JSONResponse:
    extra = {
        "event_id": event.event_id,
        "dbt_job": event.job_id,
        "run_id": event.run_id,
        "reason": problem,
        "client": _client(request),
    }
    log.warning("webhook.stale", extra=extra)
    WEBHOOKS.labels("stale").inc()
    return JSONResponse({"error": problem, "event_id": event.event_id}, status_code=422)


def _unavailable(event_id: str | None) -> JSONResponse:
    return JSONResponse(
        {"error": "could not record the event; retry later", "event_id": event_id},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None
