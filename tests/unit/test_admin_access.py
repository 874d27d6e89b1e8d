"""Who may see the dashboard and the admin API: the pure decisions behind `AdminAccess`."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr
from starlette.datastructures import Headers

from dbt_tableau_relay.admin import (
    access_denied,
    cross_site,
    is_loopback,
    presented_secret,
    proxy_evidence,
    proxy_header,
)

TOKEN = SecretStr("s3cret-admin-token")
LOCAL = "127.0.0.1"  # the peer of a connection made on this machine


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
    denied = access_denied(
        TOKEN, listen, authorization, "relay.example.com", peer="203.0.113.9", proxied_by="via"
    )
    assert denied is None


@pytest.mark.parametrize(
    "authorization", [None, "Bearer ", "Bearer s3cret", f"Bearer {TOKEN.get_secret_value()}!"]
)
def test_with_a_token_anything_else_is_401(authorization: str | None) -> None:
    denied = access_denied(TOKEN, "127.0.0.1:8080", authorization, "127.0.0.1:8080", peer=LOCAL)
    assert denied is not None
    assert denied.status == 401
    assert TOKEN.get_secret_value() not in denied.reason


@pytest.mark.parametrize("token", [None, SecretStr("")])
def test_without_a_token_loopback_is_open(token: SecretStr | None) -> None:
    assert access_denied(token, "127.0.0.1:8080", None, "127.0.0.1:8080", peer=LOCAL) is None
    assert access_denied(token, "localhost:8080", None, "localhost:8080", peer=LOCAL) is None
    assert access_denied(token, "[::1]:8080", None, "[::1]:8080", peer="::1") is None


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "10.0.0.5:8080", "[::]:8080", ":8080"])
def test_without_a_token_a_reachable_listener_is_403_naming_the_fix(listen: str) -> None:
    denied = access_denied(None, listen, None, "127.0.0.1:8080", peer=LOCAL)
    assert denied is not None
    assert denied.status == 403
    assert "set admin_token" in denied.reason.lower()


@pytest.mark.parametrize("host", ["evil.example:8080", "evil.example", None])
def test_without_a_token_a_request_for_another_host_is_403(host: str | None) -> None:
    denied = access_denied(None, "127.0.0.1:8080", None, host, peer=LOCAL)
    assert denied is not None
    assert denied.status == 403


@pytest.mark.parametrize(
    ("names", "found"),
    [
        (["Forwarded"], "forwarded"),
        (["X-Forwarded-For"], "x-forwarded-for"),
        (["x-forwarded-host"], "x-forwarded-host"),
        (["X-Forwarded-Proto"], "x-forwarded-proto"),
        (["X-Forwarded-Port"], "x-forwarded-port"),  # the whole family
        (["X-Real-IP"], "x-real-ip"),
        (["Via"], "via"),
        (["host", "accept", "X-Real-Ip"], "x-real-ip"),
        (["host", "accept", "user-agent", "authorization"], None),
        (["x-forwarded"], None),  # not a header any proxy sends
        ([], None),
    ],
)
def test_the_headers_that_show_a_proxy(names: list[str], found: str | None) -> None:
    assert proxy_header(names) == found


@pytest.mark.parametrize(
    ("names", "http_version", "evidence"),
    [
        (["host", "via"], "1.1", "it has a via header"),
        (["host", "x-real-ip"], "1.0", "it has a x-real-ip header"),
        (
            ["host", "connection"],
            "1.0",
            "it was sent with HTTP/1.0, as nginx's proxy_pass does by default",
        ),
        (["host"], "1.1", None),
        (["host"], "2", None),
    ],
)
def test_what_shows_a_proxy(names: list[str], http_version: str, evidence: str | None) -> None:
    assert proxy_evidence(names, http_version) == evidence


@pytest.mark.parametrize("header", ["forwarded", "x-forwarded-for", "x-real-ip", "via"])
def test_without_a_token_a_request_through_a_proxy_is_403_naming_the_fix(header: str) -> None:
    """nginx's default proxy_pass connects from 127.0.0.1 with Host: 127.0.0.1:PORT."""
    evidence = proxy_evidence([header], "1.1")
    denied = access_denied(
        None, "127.0.0.1:8080", None, "127.0.0.1:8080", peer=LOCAL, proxied_by=evidence
    )
    assert denied is not None
    assert denied.status == 403
    assert header in denied.reason
    assert "set admin_token" in denied.reason


@pytest.mark.parametrize("peer", ["203.0.113.9", "192.168.1.20", "::ffff:10.0.0.1", "", None])
def test_without_a_token_a_peer_that_is_not_loopback_is_403(peer: str | None) -> None:
    """Whatever `listen` says (a port forwarded into a container, a socket handed over)."""
    denied = access_denied(None, "127.0.0.1:8080", None, "127.0.0.1:8080", peer=peer)
    assert denied is not None
    assert denied.status == 403
    assert "set admin_token" in denied.reason


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
