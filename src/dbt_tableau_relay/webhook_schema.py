"""The OpenAPI description of `POST /webhooks/dbt`.

The endpoint is a bare ASGI route (webhooks.py) for speed, and a bare route
is invisible to FastAPI's schema. `describe(router)` adds an APIRoute that
documents it, after the bare route, so routing never reaches it (and if it
did, it would answer the same way).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from fastapi import APIRouter, Request, Security
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field

from dbt_tableau_relay.events import EVENT_SCHEMA


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookQueued(_Answer):
    status: Literal["queued"]
    event_id: str
    refreshes_queued: int = Field(ge=0)
    lineage_queued: int | None = Field(
        default=None, ge=1, description="lineage rules whose refreshes the worker will find"
    )


class WebhookNotQueued(_Answer):
    status: Literal["duplicate", "ignored"]
    event_id: str
    refreshes_queued: int = Field(ge=0)


class WebhookRefused(_Answer):
    error: str


class WebhookRefusedEvent(_Answer):
    error: str
    event_id: str | None


def _answer_doc(model: type[_Answer], description: str, **headers: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": model, "description": description}
    if headers:
        doc["headers"] = {
            k: {"description": v, "schema": {"type": "string"}} for k, v in headers.items()
        }
    return doc


_CLOSES = {"Connection": "close: the rest of the body is not read"}
_ANSWERS: Final[dict[int | str, dict[str, Any]]] = {
    202: _answer_doc(WebhookQueued, "Stored; refreshes queued (or joined to a queued one)."),
    200: _answer_doc(
        WebhookNotQueued, "A duplicate eventId (nothing created), or no rule matches."
    ),
    400: _answer_doc(WebhookRefused, "Signed, but not a dbt Cloud event: stored as 'invalid'."),
    401: _answer_doc(WebhookRefused, "Missing or wrong signature: nothing stored."),
    408: _answer_doc(WebhookRefused, "The body did not arrive in time: nothing stored.", **_CLOSES),
    413: _answer_doc(WebhookRefused, "The body is larger than 1 MiB: nothing stored.", **_CLOSES),
    422: _answer_doc(WebhookRefusedEvent, "Signed, but outside the replay window: not stored."),
    503: _answer_doc(
        WebhookRefusedEvent,
        "The database failed or was too slow: nothing stored; dbt Cloud retries.",
        **{"Retry-After": "seconds to wait"},
    ),
}
_SIGNATURE = APIKeyHeader(
    name="Authorization",
    scheme_name="dbtWebhookSignature",
    description="The lowercase hex HMAC-SHA256 of the raw body, keyed with a webhook secret.",
    auto_error=False,
)


def describe(
    router: APIRouter, path: str, receive: Callable[[Request], Awaitable[Response]]
) -> None:
    """Add to `router` an APIRoute at `path` that documents `receive`, the webhook receiver."""

    @router.post(
        path,
        status_code=202,
        response_model=None,
        responses=_ANSWERS,
        summary="Receive a dbt Cloud job webhook",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": EVENT_SCHEMA}},
            }
        },
    )
    async def documented_webhook(
        request: Request, signature: str | None = Security(_SIGNATURE)
    ) -> Response:
        """Verify the signature, record the event, answer; the worker refreshes Tableau later."""
        return await receive(request)
