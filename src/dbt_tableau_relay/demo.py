"""`dbt-tableau-relay demo`: the whole path on one machine, no account anywhere.

The built-in Tableau emulator and the relay (receiver + worker, SQLite in a
temporary folder) run in this process; signed sample dbt Cloud events go to
the relay over real HTTP; the demo waits until every refresh has Tableau's
verdict and prints what happened. Job 101 refreshes a workbook, which
succeeds; job 202 refreshes a data source whose extract fails in Tableau.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dbt_tableau_relay.config import Settings
from dbt_tableau_relay.demo_lineage import run_lineage_demo
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.samples import post_event, sample_event
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.states import FINAL_STATES, JobState
from dbt_tableau_relay.store import RefreshJob, Store

SECRET = "demo-webhook-secret"  # noqa: S105 - the demo's own, used nowhere else
PAT_NAME, PAT_SECRET = "demo-pat", "demo-pat-secret"
EXPECTED = {  # target -> the state Tableau's verdict should leave it in
    "workbook:path:Sales/Executive Overview": JobState.SUCCEEDED,
    "datasource:path:Finance/Legacy Ledger": JobState.FAILED,
}

Echo = Callable[[str], None]


def demo_settings(tableau_url: str, folder: Path) -> Settings:
    return Settings.model_validate(
        {
            "database_url": f"sqlite:///{folder / 'relay.db'}",
            "dbt": {"webhook_secrets": [SECRET]},
            "tableau": {
                "server_url": tableau_url,
                "site": "demo",
                "token_name": PAT_NAME,
                "token_secret": PAT_SECRET,
            },
            "rules": [
                {
                    "name": "sales-dashboards",
                    "on": {"job_id": 101},
                    "refresh": [{"workbook": "Sales/Executive Overview"}],
                },
                {
                    "name": "finance-ledger",
                    "on": {"job_id": 202},
                    "refresh": [{"datasource": "Finance/Legacy Ledger"}],
                },
            ],
            "worker": {"poll_interval": 0.2},
        }
    )


@dataclass(frozen=True)
class Delivery:
    what: str
    status: int
    answer: str


def run_demo(echo: Echo, timeout: float = 120.0) -> int:
    """Run the demo; 0 when every refresh ended as expected."""
    with (
        tempfile.TemporaryDirectory() as folder,
        Emulator(
            site="demo", pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=2.0
        ) as tableau,
    ):
        settings = demo_settings(tableau.url, Path(folder))
        echo(f"Tableau emulator at {tableau.url}; relay database {settings.database_url}")
        with serve_in_thread(relay_app(settings)) as relay:
            echo(f"Relay at {relay.url}; sending signed dbt Cloud events...\n")
            deliveries = send_events(f"{relay.url}/webhooks/dbt")
            print_table(echo, ["delivery", "HTTP", "relay's answer"], deliveries_rows(deliveries))
            store = Store(settings.database_url)
            try:
                jobs = wait_for_verdicts(store, timeout)
            finally:
                store.dispose()
        refresh_posts = len(tableau.refresh_posts())
        echo("")
        print_table(
            echo,
            ["job", "rule", "target", "state", "Tableau job", "finish", "notes"],
            job_rows(jobs),
        )
        named = verdict(echo, jobs, refresh_posts)
        echo("\n-- Lineage: refresh exactly what the run rebuilt --\n")
        by_lineage = run_lineage_demo(echo, Path(folder), timeout)
    return named or by_lineage


def send_events(url: str) -> list[Delivery]:
    completed_101 = sample_event("completed", job_id=101, run_id=9001)
    plan = [
        ("job 101 run completed", completed_101, SECRET),
        ("job 202 run completed", sample_event("completed", job_id=202, run_id=9002), SECRET),
        ("job 101 completed, retried by dbt", completed_101, SECRET),
        ("job 101 run started", sample_event("started", job_id=101, run_id=9003), SECRET),
        ("forged signature", sample_event("completed", job_id=101), "not-the-secret"),
    ]
    deliveries = []
    for what, body, secret in plan:
        answer = post_event(url, body, secret)
        deliveries.append(Delivery(what, answer.status_code, _summary(answer.json())))
    return deliveries


def _summary(answer: dict[str, object]) -> str:
    if answer.get("status") == "queued":
        return f"{answer.get('status')}: {answer['refreshes_queued']} refresh(es) queued"
    return str(answer.get("status") or answer.get("error") or answer)


def wait_for_verdicts(store: Store, timeout: float) -> list[RefreshJob]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = sorted(store.list_jobs(limit=100), key=lambda j: j.id)
        if (jobs and all(j.state in FINAL_STATES for j in jobs)) or time.monotonic() > deadline:
            return jobs
        time.sleep(0.25)


def deliveries_rows(deliveries: list[Delivery]) -> list[list[str]]:
    return [[d.what, str(d.status), d.answer] for d in deliveries]


def job_rows(jobs: list[RefreshJob]) -> list[list[str]]:
    return [
        [
            str(j.id),
            j.rule_name,
            f"{j.target_kind} {j.target_ref}",
            j.state,
            (j.tableau_job_id or "-")[:8],
            "-" if j.finish_code is None else str(j.finish_code),
            _short(j.error or ""),
        ]
        for j in jobs
    ]


def verdict(echo: Echo, jobs: list[RefreshJob], refresh_posts: int) -> int:
    outcome = {j.target_key: j.state for j in jobs}
    if outcome != EXPECTED:
        echo(f"\nUnexpected outcome: {outcome}")
        return 1
    echo(
        f"\nAll {len(jobs)} refreshes reached Tableau's verdict with {refresh_posts} refresh "
        "request(s): the duplicate delivery created nothing, the started event was ignored, "
        "the forged one was refused, and the failed extract shows Tableau's own notes."
    )
    return 0


def print_table(echo: Echo, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in [header, ["-" * w for w in widths], *rows]:
        echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
