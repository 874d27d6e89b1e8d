"""Secrets never leak: a full run with faults, every output grepped.

The relay runs as `serve` at DEBUG level (the most it ever says), takes
signed and forged deliveries, meets 5xx, an HTML 429, and a Tableau that ends
every session, and notifies a Slack receiver that first answers 500 and a
webhook nobody listens on; then every output a person or a machine can read is
searched for the webhook secrets, the PAT secret, the admin token, the
notification channels' URLs and every Tableau session token the emulator
handed out: the relay's log, every HTTP answer it gives (health, metrics, the
admin API and the dashboard), the database, the CLI's own output, and the
notifications as received.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import requests

from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import post_event, sample_event
from receiver import Receiver
from support import ServeProcess, free_port, run_cli, wait_for

WEBHOOK_SECRET = "whsec-live-7f3a9c21d4e8"
OLD_WEBHOOK_SECRET = "whsec-old-0b5e6d7c8a9f"
PAT_SECRET = "pat-live-Qm9yZXN0LWdyZWVu"
ADMIN_TOKEN = "admin-live-5c1e0d9b8a7f"
PAT_NAME = "relay-prod"
SLACK_SECRET = "T0LIVE/B0LIVE/slack-live-3e9d7c"
HOOK_SECRET = "hook-live-8a2f61"

pytestmark = pytest.mark.slow


def write_config(folder: Path, tableau_url: str, port: int) -> Path:
    config = folder / "relay.yml"
    config.write_text(
        f"""
database_url: sqlite:///{folder / "relay.db"}
listen: 127.0.0.1:{port}
admin_token: "{{{{ env_var('RELAY_ADMIN_TOKEN') }}}}"
dbt:
  webhook_secrets:
    - "{{{{ env_var('DBT_WEBHOOK_SECRET') }}}}"
    - "{{{{ env_var('DBT_WEBHOOK_SECRET_OLD') }}}}"
tableau:
  server_url: {tableau_url}
  site: marketing
  token_name: {PAT_NAME}
  token_secret: "{{{{ env_var('TABLEAU_TOKEN_SECRET') }}}}"
rules:
  - name: sales
    on: {{job_id: 101}}
    refresh: [{{workbook: Sales/Executive Overview}}, {{datasource: Finance/Legacy Ledger}}]
  - name: live
    on: {{job_id: 404}}
    refresh: [{{datasource: Sales/Live Inventory}}]
worker: {{poll_interval: 0.1, retry_base_seconds: 0.1, busy_retry_seconds: 0.3}}
notify:
  - slack: "{{{{ env_var('SLACK_WEBHOOK_URL') }}}}"
  - webhook: "{{{{ env_var('HOOK_URL') }}}}"
    on: [failed, dead, succeeded]
public_url: https://relay.example.com
"""
    )
    return config


ENV = {
    "DBT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "DBT_WEBHOOK_SECRET_OLD": OLD_WEBHOOK_SECRET,
    "TABLEAU_TOKEN_SECRET": PAT_SECRET,
    "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
}


def test_no_secret_reaches_any_output(tmp_path: Path) -> None:
    with (
        Emulator(
            site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.3
        ) as emu,
        Receiver(answers=[500], path=f"/services/{SLACK_SECRET}") as slack,
    ):
        port = free_port()
        config = write_config(tmp_path, emu.url, port)
        nobody = f"http://127.0.0.1:{free_port()}/relay?token={HOOK_SECRET}"
        env = ENV | {"SLACK_WEBHOOK_URL": slack.url, "HOOK_URL": nobody}
        relay = ServeProcess(
            config, port, env=env, args=["--log-level", "DEBUG", "--log-format", "json"]
        ).start()
        try:
            answers = exercise(relay.url, emu)
            slack.wait_for(2, 60)  # a 500, then the same message again
        finally:
            relay.stop()
        cli_output = cli_outputs(config, env)
        tokens = emu.issued_tokens()
        site_luid = emu.site_luid

    outputs = {
        "relay log": relay.output(),
        "HTTP answers": "\n".join(answers),
        "database": dump(tmp_path / "relay.db"),
        "CLI output": cli_output,
        "notifications": "\n".join(r.body.decode() for r in slack.received),
    }
    assert len(tokens) >= 2  # the sessions ended mid-run, so the relay signed in again
    assert "webhook.unauthorized" in outputs["relay log"]  # the log did speak
    assert "notify.retry" in outputs["relay log"]
    for where, text in outputs.items():
        for name, secret in [
            ("webhook secret", WEBHOOK_SECRET),
            ("old webhook secret", OLD_WEBHOOK_SECRET),
            ("PAT secret", PAT_SECRET),
            ("admin token", ADMIN_TOKEN),
            ("Slack webhook URL", SLACK_SECRET),
            ("notification webhook URL", HOOK_SECRET),
            *((f"session token {n}", t) for n, t in enumerate(tokens)),
        ]:
            assert secret not in text, f"the {name} appears in the {where}"
            # A token's random parts, in case one is logged alone (the site LUID is public).
            for part in set(secret.split("|")) - {site_luid}:
                assert part not in text, f"part of the {name} in the {where}"


def exercise(url: str, emu: Emulator) -> list[str]:
    """Deliveries of every kind, Tableau faults, and every read-only HTTP answer."""
    hook = f"{url}/webhooks/dbt"
    answers = []
    emu.faults.fail(count=2, status=503)
    emu.faults.rate_limit(count=1, retry_after=0.2)
    for job_id, secret in [(101, WEBHOOK_SECRET), (404, OLD_WEBHOOK_SECRET), (101, "forged")]:
        answers.append(post_event(hook, sample_event("completed", job_id=job_id), secret).text)
    answers.append(requests.post(hook, data=b"{not json", timeout=5).text)
    wait_for(lambda: len(emu.refresh_posts()) >= 2, 60)
    emu.invalidate_sessions()
    answers.append(
        post_event(hook, sample_event("completed", job_id=101, run_id=2), WEBHOOK_SECRET).text
    )
    wait_for(lambda: len([r for r in emu.refresh_posts() if r.status == 202]) >= 3, 60)
    time.sleep(1.0)  # let the refreshes be followed to their finish codes
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    run_id = requests.get(f"{url}/api/events", headers=bearer, timeout=5).json()[0]["run_id"]
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/jobs",
        "/jobs/1",
        "/events",
        f"/runs/{run_id}",
        "/api/summary",
        "/api/jobs",
        "/api/events",
        f"/api/runs/{run_id}",
    ]:
        answer = requests.get(f"{url}{path}", headers=bearer, timeout=5)
        answers.append(answer.text)
        answers.append(str(answer.headers))
    return answers


def cli_outputs(config: Path, env: dict[str, str]) -> str:
    """What the CLI prints, at DEBUG, for the Tableau commands and for a broken config."""
    wrong = config.parent / "wrong.yml"
    wrong.write_text(config.read_text().replace("token_secret:", "token_secret: x\n  bad:"))
    runs = [
        ["--config", str(config), "--log-level", "DEBUG", *args]
        for args in (
            ["check"],
            ["tableau", "list", "workbooks"],
            ["refresh", "--workbook", "Sales/Executive Overview", "--wait"],
            ["refresh", "--datasource", "Sales/Live Inventory"],
            ["jobs"],
            ["jobs", "--json"],
            ["events", "--json"],
        )
    ] + [["--config", str(wrong), "check"]]
    results = [run_cli(*args, env=env) for args in runs]
    return "\n".join(r.stdout + r.stderr for r in results)


def dump(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        return "\n".join(conn.iterdump())
