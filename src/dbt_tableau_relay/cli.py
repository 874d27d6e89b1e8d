"""Command line: thin commands that parse, build settings and call into the package.

Exit codes: 0 done; 1 Tableau refused or a refresh failed; 2 bad usage or config.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dbt_tableau_relay import logs
from dbt_tableau_relay.cli_reads import events, explain, jobs
from dbt_tableau_relay.config import (
    WORKER_DEFAULTS,
    Settings,
    Target,
    hide_password,
    load_settings,
)
from dbt_tableau_relay.errors import ConfigError, RelayError, TableauError
from dbt_tableau_relay.tableau import TableauClient
from dbt_tableau_relay.tableau_jobs import TableauJob
from dbt_tableau_relay.targets import project_paths

if TYPE_CHECKING:
    from dbt_tableau_relay.emulators.dbt_cloud import DbtCloudEmulator
    from dbt_tableau_relay.queue import RefreshQueue


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "RELAY"}
)
@click.option(
    "--config",
    "config_file",
    envvar="DBT_TABLEAU_RELAY_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file [default: relay.yml; env DBT_TABLEAU_RELAY_CONFIG].",
)
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING...")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.version_option(package_name="dbt-tableau-relay")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, log_level: str, log_format: str) -> None:
    """dbt-tableau-relay: refresh Tableau content when dbt Cloud jobs finish."""
    logs.configure(log_level, log_format)
    ctx.obj = config_file


def settings_of(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.find_root().obj)
    except ConfigError as exc:
        fail(str(exc), code=2)


def fail(message: str, code: int = 1) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Report the project's errors as one clear line and a non-zero exit."""
    try:
        yield
    except ConfigError as exc:
        fail(str(exc), code=2)
    except RelayError as exc:
        fail(str(exc))


main.add_command(jobs)  # `jobs`, `events` and `explain` live in cli_reads.py
main.add_command(events)
main.add_command(explain)


# -- refresh ------------------------------------------------------------------


@main.command()
@click.option("--workbook", metavar="PATH", help="Project/Sub/Workbook name.")
@click.option("--datasource", metavar="PATH", help="Project/Sub/Data source name.")
@click.option("--workbook-id", metavar="LUID")
@click.option("--datasource-id", metavar="LUID")
@click.option("--incremental", is_flag=True, help="Incremental refresh (REST API 3.25+).")
@click.option("--wait", is_flag=True, help="Follow the Tableau job to its finish code.")
@click.option(
    "--timeout",
    default=WORKER_DEFAULTS.follow_timeout,
    show_default=True,
    help="Seconds to wait at most (worker.follow_timeout's default).",
)
@click.pass_context
def refresh(
    ctx: click.Context,
    workbook: str | None,
    datasource: str | None,
    workbook_id: str | None,
    datasource_id: str | None,
    incremental: bool,
    wait: bool,
    timeout: float,
) -> None:
    """Refresh one workbook or data source now."""
    given = {
        "workbook": workbook,
        "datasource": datasource,
        "workbook_id": workbook_id,
        "datasource_id": datasource_id,
    }
    chosen = {k: v for k, v in given.items() if v}
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one of --workbook, --datasource, --workbook-id, --datasource-id"
        )
    target = Target.model_validate(chosen)
    with reported_errors(), TableauClient(settings_of(ctx).tableau) as client:
        item, job = client.refresh(target, incremental=incremental)
        click.echo(f"queued: {item} -> Tableau job {job.id}")
        if not wait:
            return
        done = client.wait(job.id, timeout=timeout, on_progress=_show_progress)
        click.echo(f"\r{_job_line(done)}", err=True)
    if not done.succeeded:
        notes = "; ".join(done.notes) or "no notes"
        fail(f"Tableau job {done.id} {done.outcome} (finishCode {done.finish_code}): {notes}")
    click.echo(f"succeeded: {item}")


def _show_progress(job: TableauJob) -> None:
    click.echo(f"\r{_job_line(job)}", nl=False, err=True)


def _job_line(job: TableauJob) -> str:
    progress = f" {job.progress}%" if job.progress is not None and not job.finished else ""
    return f"Tableau job {job.id}: {job.outcome}{progress}".ljust(60)


# -- tableau list -------------------------------------------------------------


@main.group()
def tableau() -> None:
    """Look at the Tableau site the config points to."""


@tableau.command("list")
@click.argument("what", type=click.Choice(["projects", "workbooks", "datasources"]))
@click.pass_context
def list_content(ctx: click.Context, what: str) -> None:
    """List projects, workbooks or data sources with their paths and LUIDs."""
    with reported_errors(), TableauClient(settings_of(ctx).tableau) as client:
        if what == "projects":
            rows = sorted((path, luid) for luid, path in project_paths(client.projects()).items())
        else:
            items = client.items("workbook" if what == "workbooks" else "datasource")
            rows = sorted((item.path, item.luid) for item in items)
    for path, luid in rows:
        click.echo(f"{luid}  {path}")


# -- check --------------------------------------------------------------------


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the config, sign in to Tableau and resolve every rule's target."""
    from dbt_tableau_relay.store import check_database

    settings = settings_of(ctx)
    database = hide_password(settings.database_url)
    click.echo(f"ok      config: {len(settings.rules)} rule(s), database {database}")
    with reported_errors():
        click.echo(f"ok      database: {check_database(settings.database_url)}")
    failures = 0
    with TableauClient(settings.tableau) as client:
        try:
            client.connect()
        except TableauError as exc:
            fail(f"tableau: cannot sign in to {settings.tableau.server_url}: {exc}")
        site = settings.tableau.site or "(Default)"
        click.echo(f"ok      tableau: signed in to site {site}, REST API {client.api_version}")
        for rule in settings.rules:
            for target in rule.items:
                failures += not _check_target(client, rule.name, target)
            for source in rule.lineage:
                click.echo(f"ok      rule {rule.name}: {source}: found per run (see `explain`)")
    if not settings.dbt.webhook_secrets:
        click.echo("warning dbt.webhook_secrets is empty: `serve` will refuse to start")
    if failures:
        fail(f"{failures} target(s) do not resolve")


def shown_database_url(url: str) -> str:
    """The URL as `check` prints it: a PostgreSQL password masked (deployments put one there)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def _check_target(client: TableauClient, rule: str, target: Target) -> bool:
    try:
        item = client.resolve(target)
    except TableauError as exc:
        click.echo(f"FAILED  rule {rule}: {target}: {exc}")
        return False
    click.echo(f"ok      rule {rule}: {target} -> {item.luid} ({item.path})")
    return True


# -- emulator -----------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=int)
@click.option("--site", default="", help="contentUrl of the emulated site [default: Default site].")
@click.option("--pat-name", default="relay", show_default=True)
@click.option("--pat-secret", default="relay-secret", show_default=True)
@click.option("--state", "state_file", type=click.Path(dir_okay=False), help="Site content (JSON).")
@click.option("--job-duration", default=3.0, show_default=True, help="Seconds a refresh takes.")
@click.option(
    "--control-token",
    help="Bearer token /_emulator/ calls must carry [env RELAY_EMULATOR_CONTROL_TOKEN];"
    " without one they are served to this machine only.",
)
def emulator(
    host: str,
    port: int,
    site: str,
    pat_name: str,
    pat_secret: str,
    state_file: str | None,
    job_duration: float,
    control_token: str | None,
) -> None:
    """Run the built-in Tableau REST API emulator."""
    from dbt_tableau_relay.emulators.tableau import run_emulator

    run_emulator(
        port=port,
        host=host,
        site=site,
        pat_name=pat_name,
        pat_secret=pat_secret,
        state_file=state_file,
        job_duration=job_duration,
        control_token=control_token,
    )


def _account(value: str) -> tuple[int, str]:
    account, sep, token = value.partition(":")
    if not sep or not account.strip().isdigit() or not token:
        raise click.BadParameter("give ACCOUNT_ID:TOKEN, e.g. 1:my-service-token")
    return int(account), token


def _listening(emulator: DbtCloudEmulator) -> None:
    click.echo(f"dbt Cloud emulator listening on {emulator.url} (account {emulator.account_id})")


@main.command("dbt-cloud-emulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8901, show_default=True, type=int)
@click.option(
    "--state", "state_file", type=click.Path(dir_okay=False), help="Jobs and runs (JSON)."
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    envvar="DBT_CLOUD_EMULATOR_ACCOUNTS",
    help="ACCOUNT_ID:TOKEN, repeatable [default: 1:dbtc_emulator-service-token].",
)
@click.option(
    "--artifact-delay", default=0.0, show_default=True, help="Seconds artifacts answer 404."
)
def dbt_cloud_emulator(
    host: str, port: int, state_file: str | None, accounts: tuple[str, ...], artifact_delay: float
) -> None:
    """Run the built-in dbt Cloud Admin API v2 emulator."""
    from dbt_tableau_relay.emulators.dbt_cloud import run_dbt_cloud_emulator

    tokens = dict(_account(a) for a in accounts) or None
    try:
        run_dbt_cloud_emulator(
            port, host, state_file, accounts=tokens, artifact_delay=artifact_delay, ready=_listening
        )
    except ValueError as exc:
        fail(str(exc))


# -- the relay ----------------------------------------------------------------


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """The webhook receiver and the refresh worker in one process."""
    from dbt_tableau_relay.service import serve as serve_relay

    settings = settings_of(ctx)
    with reported_errors():
        serve_relay(settings)


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """A refresh worker alone (several processes share a PostgreSQL queue)."""
    from dbt_tableau_relay.service import work

    settings = settings_of(ctx)
    with reported_errors():
        work(settings)


@main.command()
@click.argument("job_ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--dead", is_flag=True, help="Also every dead job not replayed yet.")
@click.pass_context
def replay(ctx: click.Context, job_ids: tuple[int, ...], dead: bool) -> None:
    """Refresh the items of failed or dead refresh jobs again, for their events.

    Works on the configured database directly; a running worker sends the new
    jobs at its next look. Prints `OLD -> NEW` for each job replayed.
    """
    from dbt_tableau_relay.queue import RefreshQueue
    from dbt_tableau_relay.states import JobState
    from dbt_tableau_relay.store import Store

    if not job_ids and not dead:
        raise click.UsageError("give the ids of the jobs to replay, or --dead")
    settings = settings_of(ctx)
    with reported_errors():
        store = Store(settings.database_url)
        try:
            store.migrate()
            queue = RefreshQueue(store, "cli")
            ids = list(
                dict.fromkeys([*job_ids, *(queue.unreplayed(JobState.DEAD) if dead else [])])
            )
            failures = _replay_each(queue, ids)
        finally:
            store.dispose()
    if not ids:
        click.echo("no dead refresh jobs to replay")
    if failures:
        fail(f"{failures} of {len(ids)} job(s) could not be replayed")


def _replay_each(queue: RefreshQueue, job_ids: list[int]) -> int:
    """Replay each job, printing `OLD -> NEW`; how many could not be replayed."""
    from dbt_tableau_relay.errors import ReplayError

    failures = 0
    for job_id in job_ids:
        try:
            click.echo(f"{job_id} -> {queue.replay(job_id)}")
        except ReplayError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            failures += 1
    return failures


@main.command()
@click.option("--verbose", is_flag=True, help="Show the relay's own log lines.")
def demo(verbose: bool) -> None:
    """A full local run: Tableau emulator, relay, signed sample events, summary."""
    if not verbose:
        logs.configure("WARNING")
    from dbt_tableau_relay.demo import run_demo

    sys.exit(run_demo(click.echo))


@main.command("send-test")
@click.argument("url")
@click.option(
    "--secret", envvar="DBT_WEBHOOK_SECRET", required=True, help="[env DBT_WEBHOOK_SECRET]"
)
@click.option(
    "--event", type=click.Choice(["completed", "started", "errored"]), default="completed"
)
@click.option("--job-id", default="123", show_default=True)
@click.option("--run-status-code", type=int, help="e.g. 20 for a completed run that failed.")
def send_test(url: str, secret: str, event: str, job_id: str, run_status_code: int | None) -> None:
    """Sign and post a sample dbt Cloud event to URL; print the answer."""
    from dbt_tableau_relay.samples import post_event, sample_event

    body = sample_event(event, job_id=job_id, run_status_code=run_status_code)  # type: ignore[arg-type]
    try:
        answer = post_event(url, body, secret)
    except OSError as exc:
        fail(f"cannot post to {url}: {exc}")
    click.echo(f"HTTP {answer.status_code}")
    click.echo(answer.text)
    sys.exit(0 if answer.status_code < 300 else 1)
