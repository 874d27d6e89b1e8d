"""`dbt-tableau-relay jobs` and `events` as a user runs them: on the database a real run left.

A relay (with its worker, against the emulator) runs in this process from the
same relay.yml until its jobs have Tableau's verdict, and stops; then the CLI
runs as a subprocess on that database, no server up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbt_tableau_relay.config import load_settings
from dbt_tableau_relay.emulators.tableau import Emulator
from dbt_tableau_relay.lineage.explain import to_json
from dbt_tableau_relay.lineage.model import Decision, NodeVerdict, TableauItem
from dbt_tableau_relay.queue import FINAL_STATES
from dbt_tableau_relay.samples import post_event, sample_event
from dbt_tableau_relay.service import relay_app, serve_in_thread
from dbt_tableau_relay.store import RefreshJob, Store, utcnow
from support import run_cli, wait_for

SECRET = "reads-webhook-secret"
PAT_NAME, PAT_SECRET = "reads-pat", "reads-pat-secret"
EXEC, LEDGER = "Sales/Executive Overview", "Finance/Legacy Ledger"  # the ledger's refresh fails


@pytest.fixture(scope="module")
def tableau() -> Iterator[Emulator]:
    with Emulator(
        site="marketing", pat_name=PAT_NAME, pat_secret=PAT_SECRET, job_duration=0.2
    ) as emu:
        yield emu


def write_config(path: Path, tableau: Emulator, database_url: str) -> Path:
    path.write_text(
        f"""
database_url: {database_url}
dbt: {{webhook_secrets: [{SECRET}]}}
tableau: {{server_url: "{tableau.url}", site: marketing, token_name: {PAT_NAME},
           token_secret: {PAT_SECRET}, request_timeout: 2}}
rules:
  - {{name: sales, on: {{job_id: 101}}, refresh: [{{workbook: {EXEC}}}]}}
  - {{name: ledger, on: {{job_id: 303}}, refresh: [{{datasource: {LEDGER}}}]}}
worker: {{poll_interval: 0.1, retry_base_seconds: 0.05, max_attempts: 2}}
"""
    )
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, tableau: Emulator) -> Path:
    """relay.yml of a database where runs 1 (dbt job 101) and 2 (303) have been refreshed."""
    folder = tmp_path_factory.mktemp("reads")
    path = write_config(folder / "relay.yml", tableau, f"sqlite:///{folder / 'relay.db'}")
    settings = load_settings(path)
    store = Store(settings.database_url)
    try:
        with serve_in_thread(relay_app(settings)) as server:
            for run_id, job_id in ((1, 101), (2, 303)):
                body = sample_event(job_id=job_id, run_id=run_id)
                post_event(f"{server.url}/webhooks/dbt", body, SECRET)
            wait_for(lambda: settled(store), what="both refreshes to finish")
    finally:
        store.dispose()
    return path


def settled(store: Store) -> bool:
    jobs = store.list_jobs()
    return len(jobs) == 2 and all(j.state in FINAL_STATES for j in jobs)


def cli(config: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli("--config", str(config), *args)
    return result.returncode, result.stdout, result.stderr


def columns(line: str, header: str, names: list[str]) -> dict[str, str]:
    """The cells of `line` under the columns `names` of the table's `header`."""
    starts = [header.index(n) for n in names]
    ends = [*starts[1:], None]
    return {n: line[s:e].strip() for n, s, e in zip(names, starts, ends, strict=True)}


# -- jobs ------------------------------------------------------------------------


def test_jobs_is_an_aligned_table_newest_first(config: Path) -> None:
    code, out, err = cli(config, "jobs")
    assert code == 0, err
    header, ledger, sales = out.splitlines()
    names = ["ID", "STATE", "RULE", "KIND", "ITEM", "ATTEMPTS", "CODE", "FINISHED", "RUNS", "ERROR"]
    assert header.split() == names
    row = columns(ledger, header, names)
    assert (row["ID"], row["STATE"], row["RULE"], row["KIND"], row["ITEM"]) == (
        "2",
        "failed",
        "ledger",
        "datasource",
        LEDGER,
    )
    assert (row["CODE"], row["RUNS"]) == ("finishCode 1", "2")
    assert row["ERROR"].startswith("com.tableausoftware")
    assert row["ERROR"].endswith("…")
    assert len(row["ERROR"]) == 60
    assert columns(sales, header, names)["STATE"] == "succeeded"
    assert columns(sales, header, names)["ITEM"] == EXEC


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        (["--state", "failed"], ["2"]),
        (["--rule", "sales"], ["1"]),
        (["--rule", "sales", "--state", "failed"], []),
        (["--limit", "1"], ["2"]),
    ],
)
def test_jobs_are_filtered_by_state_and_rule_and_limited(
    config: Path, args: list[str], ids: list[str]
) -> None:
    code, out, err = cli(config, "jobs", *args)
    assert code == 0, err
    if ids:
        assert [line.split()[0] for line in out.splitlines()[1:]] == ids
    else:
        assert out == "no refresh job matches\n"


def test_jobs_json_is_what_the_api_answers(config: Path) -> None:
    code, out, err = cli(config, "jobs", "--json", "--state", "failed")
    assert code == 0, err
    [job] = json.loads(out)
    assert (job["id"], job["state"], job["target_ref"], job["finish_code"]) == (
        2,
        "failed",
        LEDGER,
        1,
    )
    assert "Login failed" in job["error"]
    assert job["finished_at"].endswith("Z")
    assert {"attempts", "rule_name", "tableau_job_id", "replayed_as"} <= job.keys()


def test_an_unknown_state_is_a_usage_error_naming_the_known_ones(config: Path) -> None:
    code, out, err = cli(config, "jobs", "--state", "exploded")
    assert (code, out) == (2, "")
    assert "'exploded' is not one of queued, sending, following" in err


@pytest.mark.parametrize("limit", ["0", "501", "many"])
def test_a_limit_out_of_bounds_is_a_usage_error(config: Path, limit: str) -> None:
    assert cli(config, "jobs", "--limit", limit)[0] == 2
    assert cli(config, "events", "--limit", limit)[0] == 2


def test_a_lineage_made_job_is_named_by_its_path(tmp_path: Path, tableau: Emulator) -> None:
    """Sent by LUID; the table names it by the `Project/Name` its decision found."""
    config = write_config(tmp_path / "relay.yml", tableau, f"sqlite:///{tmp_path / 'relay.db'}")
    item = TableauItem("workbook", "0c9d1e2f-3a4b", "Revenue", "Finance")
    decision = Decision(
        item, "refresh", (NodeVerdict("model.shop.orders", "success"),), "exposures"
    )
    store = Store(load_settings(config).database_url)
    store.migrate()
    now = utcnow()
    with store.session() as session:
        session.add(
            RefreshJob(
                target_kind="workbook",
                target_by="luid",
                target_ref=item.luid,
                target_key=f"workbook:luid:{item.luid}",
                rule_name="lineage",
                incremental=False,
                wait=True,
                state="queued",
                attempts=0,
                not_before=now,
                created_at=now,
                updated_at=now,
                last_event_at=now,
                explanation=json.dumps(to_json([decision])[0]),
            )
        )
    store.dispose()
    code, out, err = cli(config, "jobs")
    assert code == 0, err
    assert " Finance/Revenue " in out.splitlines()[1]


# -- events ----------------------------------------------------------------------


def test_events_is_an_aligned_table_newest_first(config: Path) -> None:
    code, out, err = cli(config, "events")
    assert code == 0, err
    header, second, first = out.splitlines()
    names = ["ID", "EVENT_ID", "TYPE", "DBT_JOB", "RUN", "OUTCOME", "RECEIVED", "REFRESHES"]
    assert header.split() == names
    row = columns(second, header, names)
    assert (row["ID"], row["TYPE"], row["DBT_JOB"], row["RUN"], row["OUTCOME"]) == (
        "2",
        "job.run.completed",
        "303",
        "2",
        "queued",
    )
    assert row["EVENT_ID"].startswith("wev_")
    assert row["REFRESHES"] == "1"
    assert columns(first, header, names)["DBT_JOB"] == "101"


def test_events_are_filtered_by_dbt_job(config: Path) -> None:
    code, out, _ = cli(config, "events", "--job-id", "101")
    assert code == 0
    assert [line.split()[3] for line in out.splitlines()[1:]] == ["101"]
    code, out, _ = cli(config, "events", "--job-id", "999")
    assert (code, out) == (0, "no event of dbt job 999\n")


def test_events_json_is_what_the_api_answers(config: Path) -> None:
    code, out, err = cli(config, "events", "--json", "--limit", "1")
    assert code == 0, err
    [event] = json.loads(out)
    assert (event["id"], event["job_id"], event["run_id"], event["outcome"]) == (
        2,
        "303",
        "2",
        "queued",
    )
    assert "body" not in event


# -- the database ----------------------------------------------------------------


def test_an_empty_database_says_so(tmp_path: Path, tableau: Emulator) -> None:
    config = write_config(tmp_path / "relay.yml", tableau, f"sqlite:///{tmp_path / 'relay.db'}")
    assert cli(config, "jobs") == (0, "no refresh job yet\n", "")
    assert cli(config, "events") == (0, "no event yet\n", "")
    assert cli(config, "jobs", "--json")[1] == "[]\n"


def test_a_database_that_cannot_be_opened_is_one_line_and_exit_1(
    tmp_path: Path, tableau: Emulator
) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'relay.db'}"
    config = write_config(tmp_path / "relay.yml", tableau, url)
    for command in ("jobs", "events"):
        code, out, err = cli(config, command)
        assert (code, out) == (1, "")
        [line] = err.splitlines()  # one line: the store's own database error
        assert line.startswith(f"error: database {url}: unable to open database file")
        assert "check database_url" in line
