"""What a notification says, per channel: pure functions of a `JobStory`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from dbt_tableau_relay.messages import (
    HEADER_CHARS,
    SCHEMA,
    DbtRun,
    JobStory,
    job_url,
    render,
    run_url,
    slack,
    teams,
    webhook,
)

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "notification.schema.json"
T0 = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
RUN = DbtRun(
    "70403103",
    job_id="101",
    job_name="Daily build",
    account_id="1",
    project_id="167194",
    project_name="Analytics",
    status="Success",
    url="https://cloud.getdbt.com/deploy/1/projects/167194/runs/70403103",
)
FAILED = JobStory(
    job_id=12,
    outcome="failed",
    kind="workbook",
    path="Sales/Executive Overview",
    luid="5c8e2a1b-0000-4000-8000-000000000001",
    rule="sales",
    attempts=1,
    tableau_job_id="7f9c-job",
    finish_code=1,
    error_code="finishCode 1",
    message="Extract too large for the site's limit",
    created_at=T0,
    finished_at=T0,
    runs=(RUN,),
    link="https://relay.example.com/jobs/12",
)
DEAD = replace(
    FAILED,
    outcome="dead",
    kind="datasource",
    path="Finance/Revenue",
    finish_code=None,
    error_code="503",
    message="Tableau 503: service unavailable",
    attempts=8,
)
SUCCEEDED = replace(FAILED, outcome="succeeded", error_code=None, message=None, finish_code=0)
STORIES = [FAILED, DEAD, SUCCEEDED]


def texts(value: Any) -> list[str]:
    """Every string in a JSON document."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return [value] if isinstance(value, str) else []


# -- Slack ---------------------------------------------------------------------------


@pytest.mark.parametrize("story", STORIES, ids=lambda s: s.outcome)
def test_slack_has_blocks_and_a_text_fallback(story: JobStory) -> None:
    body = slack(story)
    assert set(body) == {"text", "blocks"}
    assert "Sales/Executive Overview" in body["text"] or "Finance/Revenue" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    assert len(body["blocks"][0]["text"]["text"]) <= HEADER_CHARS
    fields = body["blocks"][1]["fields"]
    assert len(fields) <= 10  # Slack's limit
    assert all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in fields)


def test_slack_names_item_rule_job_run_and_tableaus_verdict() -> None:
    everything = "\n".join(texts(slack(FAILED)))
    for expected in ("Sales/Executive Overview", "sales", "Daily build (id 101)", "70403103"):
        assert expected in everything
    assert "finishCode 1" in everything
    assert "Extract too large" in everything
    assert (
        "<https://cloud.getdbt.com/deploy/1/projects/167194/runs/70403103|70403103>" in everything
    )


def test_slack_links_the_job_with_a_button() -> None:
    [actions] = [b for b in slack(FAILED)["blocks"] if b["type"] == "actions"]
    assert actions["elements"][0]["url"] == "https://relay.example.com/jobs/12"


def test_slack_without_a_public_url_has_no_button() -> None:
    body = slack(replace(FAILED, link=None))
    assert [b for b in body["blocks"] if b["type"] == "actions"] == []


def mrkdwn(value: Any) -> list[str]:
    """The texts Slack parses as mrkdwn (plain_text is shown as it is)."""
    if isinstance(value, dict):
        own = [value["text"]] if value.get("type") == "mrkdwn" else []
        return own + [t for v in value.values() for t in mrkdwn(v)]
    if isinstance(value, list):
        return [t for v in value for t in mrkdwn(v)]
    return []


def test_slack_escapes_its_control_characters() -> None:
    body = slack(replace(FAILED, path="R&D/<Q1>", message="a <b> & c"))
    parsed = "\n".join([body["text"], *mrkdwn(body["blocks"])])
    assert "R&amp;D/&lt;Q1&gt;" in parsed
    assert "a &lt;b&gt; &amp; c" in parsed
    assert "<Q1>" not in parsed
    assert body["blocks"][0]["text"]["text"].endswith("R&D/<Q1>")  # plain_text


def test_slack_cuts_long_notes_within_its_limits() -> None:
    body = slack(replace(FAILED, message="&" * 10_000))
    [notes] = [b for b in body["blocks"] if b["type"] == "section" and "text" in b]
    assert len(notes["text"]["text"]) <= 3000


# -- Teams ------------------------------------------------------------------------


@pytest.mark.parametrize("story", STORIES, ids=lambda s: s.outcome)
def test_teams_is_a_message_with_one_adaptive_card(story: JobStory) -> None:
    body = teams(story)
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["type"] == "TextBlock"
    assert {f["title"] for f in card["body"][1]["facts"]} >= {"Item", "Rule", "dbt job", "dbt run"}


def test_teams_links_the_job_with_an_open_url_action() -> None:
    [action] = teams(FAILED)["attachments"][0]["content"]["actions"]
    assert action == {
        "type": "Action.OpenUrl",
        "title": "Open refresh job 12",
        "url": "https://relay.example.com/jobs/12",
    }


def test_teams_shows_the_error() -> None:
    everything = "\n".join(texts(teams(DEAD)))
    assert "error 503" in everything
    assert "Tableau 503: service unavailable" in everything
    assert "data source Finance/Revenue" in everything


# -- plain JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("story", [*STORIES, replace(FAILED, runs=(), link=None, path=None)])
def test_json_matches_its_documented_schema(story: JobStory) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema_rs.validator_for(schema).validate(webhook(story, 7))


def test_json_is_versioned_and_identified() -> None:
    body = webhook(FAILED, 7)
    assert (body["schema"], body["id"], body["outcome"]) == (SCHEMA, 7, "failed")
    assert body["dbt"]["runs"][0]["run_id"] == "70403103"


@pytest.mark.parametrize(
    ("kind", "key"), [("slack", "blocks"), ("teams", "attachments"), ("webhook", "schema")]
)
def test_render_picks_the_channels_format(kind: str, key: str) -> None:
    assert key in render(kind, FAILED, 1)


# -- links ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        (None, None),
        ("https://relay.example.com", "https://relay.example.com/jobs/3"),
        ("https://example.com/relay/", "https://example.com/relay/jobs/3"),
    ],
)
def test_job_url(public: str | None, expected: str | None) -> None:
    assert job_url(public, 3) == expected


@pytest.mark.parametrize(
    ("access", "run", "expected"),
    [
        (None, RUN, None),
        (
            "https://ab123.us1.dbt.com",
            RUN,
            "https://ab123.us1.dbt.com/deploy/1/projects/167194/runs/70403103",
        ),
        ("https://cloud.getdbt.com", replace(RUN, project_id=None), None),
    ],
)
def test_run_url(access: str | None, run: DbtRun, expected: str | None) -> None:
    assert run_url(access, run) == expected


def test_many_runs_are_counted_beyond_those_named() -> None:
    story = replace(FAILED, runs=(RUN,), more_runs=4)
    assert "70403103 (+4 more)" in slack(story)["text"]


@pytest.mark.parametrize(
    ("story", "verdict"),
    [
        (FAILED, "finishCode 1"),
        (DEAD, "error 503"),
        (replace(FAILED, finish_code=None, error_code="403004"), "error 403004"),
        (replace(SUCCEEDED, finish_code=None), "accepted (not followed)"),
        (replace(FAILED, finish_code=None, error_code=None), "no verdict from Tableau"),
    ],
)
def test_tableaus_verdict_in_a_few_words(story: JobStory, verdict: str) -> None:
    assert story.verdict == verdict
