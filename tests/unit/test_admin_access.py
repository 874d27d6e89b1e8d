"""Who may see the dashboard and the admin API: the pure decisions behind `AdminAccess`."""

from __future__ import annotations

import base64
from typing import get_args

import pytest
from pydantic import SecretStr
from starlette.datastructures import Headers

from dbt_tableau_relay.admin import (
    JobState,
    access_denied,
    cross_site,
    is_loopback,
    presented_secret,
)
from dbt_tableau_relay.store import JOB_STATES

TOKEN = SecretStr("s3cret-admin-token")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),  # noqa: S104 - a listen address, not a bind
        ("::", False),
        ("192.168.1.20", False),
        ("relay.example.com", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("authorization", "secret"),
    [
        ("Bearer abc", b"abc"),
        ("bearer  abc ", b"abc"),
        (basic("admin", "abc"), b"abc"),
        (basic("", "a:b"), b"a:b"),  # only the first colon separates the user
        ("Basic not-base64!", None),
        ("Token abc", None),
        ("abc", None),
        (None, None),
    ],
)
def test_the_secret_presented(authorization: str | None, secret: bytes | None) -> None:
    assert presented_secret(authorization) == secret


@pytest.mark.parametrize(
    "authorization", [f"Bearer {TOKEN.get_secret_value()}", basic("x", TOKEN.get_secret_value())]
)
@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "0.0.0.0:8080"])
def test_with_a_token_the_token_lets_in_wherever_it_listens(
    authorization: str, listen: str
) -> None:
    assert access_denied(TOKEN, listen, authorization, "relay.example.com") is None


@pytest.mark.parametrize(
    "authorization", [None, "Bearer ", "Bearer s3cret", f"Bearer {TOKEN.get_secret_value()}!"]
)
def test_with_a_token_anything_else_is_401(authorization: str | None) -> None:
    denied = access_denied(TOKEN, "127.0.0.1:8080", authorization, "127.0.0.1:8080")
    assert denied is not None
    assert denied.status == 401
    assert TOKEN.get_secret_value() not in denied.reason


@pytest.mark.parametrize("token", [None, SecretStr("")])
def test_without_a_token_loopback_is_open(token: SecretStr | None) -> None:
    assert access_denied(token, "127.0.0.1:8080", None, "127.0.0.1:8080") is None
    assert access_denied(token, "localhost:8080", None, "localhost:8080") is None
    assert access_denied(token, "[::1]:8080", None, "[::1]:8080") is None


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "10.0.0.5:8080", "[::]:8080", ":8080"])
def test_without_a_token_a_reachable_listener_is_403_naming_the_fix(listen: str) -> None:
    denied = access_denied(None, listen, None, "127.0.0.1:8080")
    assert denied is not None
    assert denied.status == 403
    assert "set admin_token" in denied.reason.lower()


@pytest.mark.parametrize("host", ["evil.example:8080", "evil.example", None])
def test_without_a_token_a_request_for_another_host_is_403(host: str | None) -> None:
    denied = access_denied(None, "127.0.0.1:8080", None, host)
    assert denied is not None
    assert denied.status == 403


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("GET", {"sec-fetch-site": "cross-site"}, False),  # reading changes nothing
        ("POST", {}, False),  # not a browser
        ("POST", {"sec-fetch-site": "same-origin"}, False),
        ("POST", {"sec-fetch-site": "none"}, False),  # typed in the address bar
        ("POST", {"sec-fetch-site": "cross-site"}, True),
        ("POST", {"sec-fetch-site": "same-site"}, True),
        ("POST", {"origin": "http://127.0.0.1:8080", "host": "127.0.0.1:8080"}, False),
        ("POST", {"origin": "https://evil.example", "host": "127.0.0.1:8080"}, True),
        ("POST", {"origin": "null", "host": "127.0.0.1:8080"}, True),
    ],
)
def test_cross_site_posts(method: str, headers: dict[str, str], refused: bool) -> None:
    assert cross_site(method, Headers(headers)) is refused


def test_the_api_knows_every_job_state() -> None:
    assert get_args(JobState) == JOB_STATES
