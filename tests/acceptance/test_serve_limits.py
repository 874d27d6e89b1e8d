"""`serve` bounds the connections it holds (`limit_concurrency`): beyond, 503 at once."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from dbt_tableau_relay.emulators.tableau import Emulator
from support import ServeProcess, free_port, wait_for

SECRET = "limits-webhook-secret"
LIMIT = 3

pytestmark = pytest.mark.slow


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[ServeProcess]:
    with Emulator(site="marketing", pat_name="limits", pat_secret="limits-secret") as tableau:
        port = free_port()
        config = tmp_path / "relay.yml"
        config.write_text(
            f"""
database_url: sqlite:///{tmp_path / "relay.db"}
listen: 127.0.0.1:{port}
limit_concurrency: {LIMIT}
dbt: {{webhook_secrets: [{SECRET}], body_timeout_seconds: 120}}
tableau: {{server_url: "{tableau.url}", site: marketing, token_name: limits,
          token_secret: limits-secret}}
"""
        )
        relay = ServeProcess(config, port).start()
        try:
            yield relay
        finally:
            relay.stop()


def status(url: str) -> int:
    try:
        return requests.get(f"{url}/healthz", timeout=10).status_code
    except requests.ConnectionError:
        return 0


def test_connections_past_the_limit_get_503_until_some_close(relay: ServeProcess) -> None:
    port = int(relay.url.rpartition(":")[2])
    with ExitStack() as held:
        for _ in range(LIMIT):  # deliveries whose body never comes: each holds a connection
            sock = held.enter_context(socket.create_connection(("127.0.0.1", port), 10))
            sock.sendall(
                b"POST /webhooks/dbt HTTP/1.1\r\nHost: relay\r\nAuthorization: "
                + b"0" * 64
                + b"\r\nContent-Length: 100\r\n\r\n"
            )
        wait_for(lambda: status(relay.url) == 503, what="a 503 past the limit")
        answer = requests.get(f"{relay.url}/healthz", timeout=10)
        assert answer.status_code == 503
    wait_for(lambda: status(relay.url) == 200, what="the relay to serve again")
