"""What a notification says, in each channel's format: pure functions of `JobStory`.

- Slack (incoming webhook): Block Kit `blocks`, and `text`, the fallback
  Slack shows in notifications and where blocks cannot be drawn;
- Microsoft Teams (a workflow "Post to a channel when a webhook request is
  received"): a `message` with one Adaptive Card attachment, the only form
  those workflows accept;
- plain JSON (`SCHEMA`, documented in docs/notifications.md and
  docs/notification.schema.json): the facts themselves, versioned.

Each names the item (kind and `Project/Name` path, else its LUID), the rule,
the dbt job and run(s) behind the refresh, Tableau's finish code and notes or
the error code and message, and the job's page when a public URL is set.
No secret ever reaches a message: they are built from the store alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from dbt_tableau_relay.states import JobState

SCHEMA: Final = "dbt-tableau-relay.notification/v1"
MAX_RUNS: Final = 10  # runs named in a message; the rest are counted
HEADER_CHARS: Final = 150  # Slack's limit for a header block
FIELD_CHARS: Final = 1900  # Slack allows 2,000 per field
NOTES_CHARS: Final = 2800  # Slack allows 3,000 per section text
HEADLINES: Final[dict[str, str]] = {
    JobState.FAILED: "Tableau refresh failed",
    JobState.DEAD: "Tableau refresh gave up",
    JobState.SUCCEEDED: "Tableau refresh succeeded",
}
SLACK_EMOJI: Final[dict[str, str]] = {
    JobState.FAILED: ":x:",
    JobState.DEAD: ":rotating_light:",
    JobState.SUCCEEDED: ":white_check_mark:",
}
TEAMS_COLOR: Final[dict[str, str]] = {
    JobState.FAILED: "Attention",
    JobState.DEAD: "Attention",
    JobState.SUCCEEDED: "Good",
}


@dataclass(frozen=True)
class DbtRun:
    """A dbt Cloud run behind the refresh, as its webhook described it."""

    run_id: str
    job_id: str | None = None
    job_name: str | None = None
    account_id: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    status: str | None = None  # dbt's runStatus: Success, Error, Cancelled
    url: str | None = None  # the run's page in dbt Cloud, when its access URL is configured


@dataclass(frozen=True)
class JobStory:
    """The facts of one finished refresh job that a message tells."""

    job_id: int
    outcome: str  # failed, dead or succeeded
    kind: str  # workbook or datasource
    path: str | None  # Project/Name, when known
    luid: str | None
    rule: str
    attempts: int
    tableau_job_id: str | None
    finish_code: int | None
    error_code: str | None
    message: str | None  # Tableau's notes, or the error's message
    created_at: datetime
    finished_at: datetime | None
    runs: tuple[DbtRun, ...] = ()
    more_runs: int = 0  # runs beyond those in `runs`
    link: str | None = None  # the job on the relay's dashboard

    @property
    def item(self) -> str:
        kind = "data source" if self.kind == "datasource" else self.kind
        return f"{kind} {self.path or self.luid or '?'}"

    @property
    def headline(self) -> str:
        return f"{HEADLINES.get(self.outcome, self.outcome)}: {self.item}"

    @property
    def verdict(self) -> str:
        """Tableau's side in a few words: the finish code, or the error code."""
        if self.finish_code is not None:
            return f"finishCode {self.finish_code}"
        if self.error_code:
            return f"error {self.error_code}"
        if self.outcome == JobState.SUCCEEDED:
            return "accepted (not followed)"  # a rule with `wait: false`
        return "no verdict from Tableau"  # e.g. still running past follow_timeout

    @property
    def dbt_jobs(self) -> str:
        seen = dict.fromkeys(_job_label(r) for r in self.runs if r.job_id)
        return ", ".join(seen) or "none"

    def run_ids(self) -> str:
        ids = ", ".join(r.run_id for r in self.runs) or "none"
        return ids + (f" (+{self.more_runs} more)" if self.more_runs else "")


def job_url(public_url: str | None, job_id: int) -> str | None:
    """The job's page on the dashboard, when the relay's public URL is known."""
    return f"{public_url.rstrip('/')}/jobs/{job_id}" if public_url else None


def run_url(access_url: str | None, run: DbtRun) -> str | None:
    """dbt Cloud's page of a run: `{access_url}/deploy/{account}/projects/{project}/runs/{run}`."""
    if not (access_url and run.account_id and run.project_id):
        return None
    base = access_url.rstrip("/")
    return f"{base}/deploy/{run.account_id}/projects/{run.project_id}/runs/{run.run_id}"


def render(kind: str, story: JobStory, notification_id: int) -> dict[str, Any]:
    """The JSON body for a channel of `kind` (slack, teams or webhook)."""
    if kind == "slack":
        return slack(story)
    if kind == "teams":
        return teams(story)
    return webhook(story, notification_id)


# -- Slack ----------------------------------------------------------------------


def slack(story: JobStory) -> dict[str, Any]:
    header = f"{SLACK_EMOJI.get(story.outcome, '')} {story.headline}".strip()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(_cut(header, HEADER_CHARS))},
        {"type": "section", "fields": [_mrkdwn(f"*{k}*\n{v}") for k, v in _slack_facts(story)]},
    ]
    if story.message:
        notes = _cut(_slack_escape(story.message.replace("```", "'''")), NOTES_CHARS)
        blocks.append({"type": "section", "text": _mrkdwn(f"```{notes}```")})
    if story.link:
        button = {"type": "button", "text": _plain(f"Open refresh job {story.job_id}")}
        blocks.append({"type": "actions", "elements": [button | {"url": story.link}]})
    context = f"dbt-tableau-relay · refresh job {story.job_id}"
    if story.tableau_job_id:
        context += f" · Tableau job {story.tableau_job_id}"
    blocks.append({"type": "context", "elements": [_mrkdwn(_slack_escape(context))]})
    return {"text": _fallback(story), "blocks": blocks}


def _slack_facts(story: JobStory) -> list[tuple[str, str]]:
    item = f"{_slack_escape(_kind(story.kind))} `{_slack_escape(story.path or story.luid or '?')}`"
    runs = ", ".join(_slack_link(r.run_id, r.url) for r in story.runs) or "none"
    if story.more_runs:
        runs += f" (+{story.more_runs} more)"
    facts = [
        ("Item", item),
        ("Rule", _slack_escape(story.rule)),
        ("dbt job", _slack_escape(story.dbt_jobs)),
        ("dbt run", runs),
        ("Tableau", _slack_escape(story.verdict)),
        ("Attempts", str(story.attempts)),
    ]
    return [(k, _cut(v, FIELD_CHARS)) for k, v in facts]


def _fallback(story: JobStory) -> str:
    """One line for Slack's notification and for clients that draw no blocks."""
    text = f"{story.headline} (rule {story.rule}; dbt run {story.run_ids()}; {story.verdict})"
    if story.link:
        text += f" {story.link}"
    return _slack_escape(text)


def _slack_escape(text: str) -> str:
    """Slack's three control characters in mrkdwn and `text`; nothing else needs escaping."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(text: str, url: str | None) -> str:
    return f"<{url}|{_slack_escape(text)}>" if url else _slack_escape(text)


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


# -- Microsoft Teams ----------------------------------------------------------------


def teams(story: JobStory) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": story.headline,
            "weight": "Bolder",
            "size": "Medium",
            "color": TEAMS_COLOR.get(story.outcome, "Default"),
            "wrap": True,
        },
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _teams_facts(story)]},
    ]
    if story.message:
        body.append(
            {
                "type": "TextBlock",
                "text": _cut(story.message, NOTES_CHARS),
                "fontType": "Monospace",
                "wrap": True,
            }
        )
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    if story.link:
        title = f"Open refresh job {story.job_id}"
        card["actions"] = [{"type": "Action.OpenUrl", "title": title, "url": story.link}]
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


def _teams_facts(story: JobStory) -> list[tuple[str, str]]:
    runs = ", ".join(f"[{r.run_id}]({r.url})" if r.url else r.run_id for r in story.runs)
    if story.more_runs:
        runs += f" (+{story.more_runs} more)"
    return [
        ("Item", f"{_kind(story.kind)} {story.path or story.luid or '?'}"),
        ("Rule", story.rule),
        ("dbt job", story.dbt_jobs),
        ("dbt run", runs or "none"),
        ("Tableau", story.verdict),
        ("Attempts", str(story.attempts)),
        ("Refresh job", str(story.job_id)),
    ]


# -- plain JSON -----------------------------------------------------------------------


def webhook(story: JobStory, notification_id: int) -> dict[str, Any]:
    """The documented, versioned body (docs/notifications.md); `id` identifies a repeat."""
    return {
        "schema": SCHEMA,
        "id": notification_id,
        "outcome": story.outcome,
        "summary": story.headline,
        "refresh_job": {
            "id": story.job_id,
            "rule": story.rule,
            "attempts": story.attempts,
            "created_at": story.created_at.isoformat(),
            "finished_at": story.finished_at.isoformat() if story.finished_at else None,
            "url": story.link,
        },
        "item": {"kind": story.kind, "path": story.path, "luid": story.luid},
        "tableau": {
            "job_id": story.tableau_job_id,
            "finish_code": story.finish_code,
            "error_code": story.error_code,
            "message": story.message,
        },
        "dbt": {"runs": [_run_json(r) for r in story.runs], "more_runs": story.more_runs},
    }


def _run_json(run: DbtRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job_id": run.job_id,
        "job_name": run.job_name,
        "account_id": run.account_id,
        "project_id": run.project_id,
        "project_name": run.project_name,
        "status": run.status,
        "url": run.url,
    }


# -- shared -----------------------------------------------------------------------------


def _kind(kind: str) -> str:
    return "data source" if kind == "datasource" else kind


def _job_label(run: DbtRun) -> str:
    return f"{run.job_name} (id {run.job_id})" if run.job_name else str(run.job_id)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
