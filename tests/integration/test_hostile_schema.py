"""The app against its own OpenAPI schema (`/openapi.json`), with schemathesis, in-process.

Every operation the schema describes is called with generated requests, valid
and invalid, and each answer must be no server error and conform to the
schema: a documented status code, content type, headers and body.
`POST /webhooks/dbt` is a bare ASGI endpoint that FastAPI does not see, so
this also checks that its hand-written description tells the truth. It runs
twice: as generated (the signature is a guess, so nearly all 401), and
behind a proxy that signs each body, so generated events reach the parser,
the rules and the store.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dbt_tableau_relay.app import create_app
from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.store import Store
from dbt_tableau_relay.webhooks import WEBHOOK_PATH

SECRET = "schema-test-secret"
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
ADMIN_TOKEN = "schema-test-admin-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class SigningProxy:
    """Puts the right `Authorization` on each POST /webhooks/dbt, as dbt Cloud would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != WEBHOOK_PATH:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest().encode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
        signed = {**scope, "headers": [*headers, (b"authorization", signature)]}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(signed, replay, send)


def _settings(url: str) -> Settings:
    return Settings.model_validate(
        {
            "database_url": url,
            "admin_token": ADMIN_TOKEN,
            "dbt": {"webhook_secrets": [SECRET]},
            "tableau": {"server_url": "http://127.0.0.1:9", "token_name": "t", "token_secret": "s"},
            "rules": [{"name": "any", "on": {"status": "any"}, "refresh": [{"workbook": "A/B"}]}],
        }
    )


def _operations() -> list[Any]:
    """(method, path, mode) for every operation in the schema, read from an app that is
    built but never started; negative mode only where there is an input to make wrong."""
    paths = create_app(_settings("sqlite://")).openapi()["paths"]
    found = []
    for path, item in paths.items():
        for method, operation in item.items():
            takes_input = "parameters" in operation or "requestBody" in operation
            for mode in MODES if takes_input else MODES[:1]:
                found.append(
                    pytest.param(
                        method.upper(), path, mode, id=f"{method.upper()} {path} {mode.value}"
                    )
                )
    return found


def _credentials(path: str) -> dict[str, str]:
    """The admin API's token where it needs one; the webhook's signature is generated."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"} if path.startswith("/api/") else {}


def _schema(app: Any) -> Any:
    # The schema is behind the admin access rule, as the API it describes.
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=_credentials("/api/"))


@pytest.fixture(scope="module")
def relay_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'relay.db'}"
    store = Store(url)
    yield _schema(create_app(_settings(url), store=store))
    store.dispose()


@pytest.fixture(scope="module")
def signed_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('signed') / 'relay.db'}"
    store = Store(url)
    yield _schema(SigningProxy(create_app(_settings(url), store=store)))
    store.dispose()


# schemathesis's own pytest integration (`from_fixture`) does not run on pytest 9, so
# its Hypothesis strategies are used directly: one test per operation and mode.
@pytest.mark.parametrize(("method", "path", "mode"), _operations())
@EXAMPLES
@given(data=st.data())
def test_every_operation_answers_as_its_schema_says(
    relay_schema: Any, method: str, path: str, mode: GenerationMode, data: st.DataObject
) -> None:
    case = data.draw(relay_schema[path][method].as_strategy(generation_mode=mode))
    case.call_and_validate(headers=_credentials(path), checks=CHECKS)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@EXAMPLES
@given(data=st.data())
def test_signed_webhooks_are_answered_as_the_schema_says(
    signed_schema: Any, mode: GenerationMode, data: st.DataObject
) -> None:
    operation = signed_schema[WEBHOOK_PATH]["POST"]
    case = data.draw(operation.as_strategy(generation_mode=mode))
    response = case.call_and_validate(checks=CHECKS)
    event(f"answered {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code in (200, 202, 400)
