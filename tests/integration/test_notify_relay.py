"""Notifications end to end: the relay under uvicorn, the Tableau emulator, three receivers.

A dbt webhook arrives, the worker refreshes, Tableau fails the refresh, and a
Slack, a Teams and a JSON receiver each get one message about it, in their
own formats, with no secret in any of them. The bodies as received are
written to `<tmp_path>/messages/` (printed with `-s`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import harness
import pytest
from harness import Relay
from pydantic import SecretStr
from sqlalchemy import select

from dbt_tableau_relay.config import NotifyChannel
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.notifications import Notification
from dbt_tableau_relay.samples import sample_event
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.store import Store
from receiver import Receiver

PUBLIC = "https://relay.example.com"
ADMIN_TOKEN = "admin-token-0b1c2d"
NOTES = "Extract too large: 12 GB is over the site's 10 GB limit"


@pytest.fixture
def notified(tmp_path: Path) -> Iterator[tuple[Relay, dict[str, Receiver]]]:
    with ExitStack() as stack:
        found = {
            "slack": Receiver(path="/services/T0RELAY/B0RELAY/slack-s3cr3t"),
            "teams": Receiver(path="/workflows/abc/triggers/manual/paths/invoke?sig=teams-s3cr3t"),
            "webhook": Receiver(path="/relay?token=hook-s3cr3t"),
        }
        for receiver in found.values():
            stack.enter_context(receiver)
        tableau = stack.enter_context(
            Emulator(
                site="marketing",
                pat_name=harness.PAT_NAME,
                pat_secret=harness.PAT_SECRET,
                job_duration=0.3,
            )
        )
        settings = harness.relay_settings(tableau.url, f"sqlite:///{tmp_path / 'relay.db'}")
        channels = [
            NotifyChannel.model_validate({"slack": found["slack"].url}),
            NotifyChannel.model_validate({"teams": found["teams"].url}),
            NotifyChannel.model_validate(
                {"webhook": found["webhook"].url, "on": ["failed", "dead", "succeeded"]}
            ),
        ]
        settings = settings.model_copy(
            update={
                "notify": tuple(channels),
                "public_url": PUBLIC,
                "admin_token": SecretStr(ADMIN_TOKEN),
            }
        )
        running = stack.enter_context(serve_in_thread(relay_app(settings)))
        store = Store(settings.database_url)
        stack.callback(store.dispose)
        yield Relay(running.url, tableau, store), found


def secrets_of(relay: Relay, receivers: dict[str, Receiver]) -> list[str]:
    """Everything no message may carry: credentials, session tokens, channel URLs."""
    paths = ["slack-s3cr3t", "teams-s3cr3t", "hook-s3cr3t", *(r.path for r in receivers.values())]
    return [harness.PAT_SECRET, harness.SECRET, ADMIN_TOKEN, *relay.tableau.issued_tokens(), *paths]


def test_a_failed_refresh_reaches_slack_teams_and_a_webhook(
    notified: tuple[Relay, dict[str, Receiver]], tmp_path: Path
) -> None:
    relay, receivers = notified
    relay.tableau.set_refresh_outcome(relay.tableau.luid("workbook", harness.EXEC), 1, NOTES)
    assert relay.post(sample_event(job_id=101, run_id=70403103))["http"] == 202
    [job] = relay.settled_jobs()
    assert job.state == "failed"
    bodies = {kind: r.wait_for(1)[0].json() for kind, r in receivers.items()}
    save(bodies, tmp_path / "messages")

    slack, teams, hook = bodies["slack"], bodies["teams"], bodies["webhook"]
    link = f"{PUBLIC}/jobs/{job.id}"
    assert slack["text"].startswith("Tableau refresh failed: workbook Sales/Executive Overview")
    assert "70403103" in slack["text"]
    assert any(b.get("elements", [{}])[0].get("url") == link for b in slack["blocks"])
    card = teams["attachments"][0]["content"]
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Rule"] == "sales"
    assert facts["dbt run"] == "70403103"
    assert facts["Tableau"] == "finishCode 1"
    assert card["actions"][0]["url"] == link
    assert hook["tableau"]["message"] == NOTES
    assert hook["dbt"]["runs"][0]["job_name"] == "Job 101 (dbt build)"
    for text in map(json.dumps, bodies.values()):
        assert not [s for s in secrets_of(relay, receivers) if s in text]


def test_a_succeeded_refresh_reaches_only_the_channel_that_asked(
    notified: tuple[Relay, dict[str, Receiver]],
) -> None:
    relay, receivers = notified
    relay.post(sample_event(job_id=101))
    [job] = relay.settled_jobs()
    assert job.state == "succeeded"
    [received] = receivers["webhook"].wait_for(1)
    assert received.json()["outcome"] == "succeeded"
    assert (
        received.headers["Idempotency-Key"]
        == f"dbt-tableau-relay-notification-{received.json()['id']}"
    )
    harness.wait_until(lambda: states(relay) == ["sent"])
    assert receivers["slack"].count() == receivers["teams"].count() == 0


def states(relay: Relay) -> list[str]:
    with relay.store.session(readonly=True) as session:
        return list(session.scalars(select(Notification.state).order_by(Notification.id)))


def save(bodies: dict[str, object], folder: Path) -> None:
    folder.mkdir()
    for kind, body in bodies.items():
        (folder / f"{kind}.json").write_text(json.dumps(body, indent=2) + "\n")
    print(f"messages as received: {folder}")
